/** The error `call` failed with; a call that succeeds fails the test. */
export async function failure<E = Error & { code?: unknown; type?: string; data?: any }>(call: Promise<unknown>): Promise<E> {
	try {
		await call;
	} catch (err) {
		return err as E;
	}
	throw new Error("expected the call to fail");
}
