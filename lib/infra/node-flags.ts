/**
 * V8 flags for a process running MedSync services (the stack, the bench, the
 * container and `npm run serve` start them with these; package.json and the
 * Dockerfile spell them out). V8 otherwise sizes the young generation from the
 * machine's memory: a process holding every service then peaked near 440 MB
 * under load, against about 300 MB with 16 MB semispaces, for no measurable
 * change in throughput (bench/changes.md).
 */
export const NODE_FLAGS = ["--max-semi-space-size=16"];
