import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { type ErrorLike, toClientError } from "../lib/client-errors";
import { config } from "../lib/config";

const defaultSendError = ApiGateway.methods!.sendError as (req: IncomingMessage, res: ServerResponse, err: Error) => void;

const ApiService: ServiceSchema<ApiSettingsSchema> = {
	name: "api",
	mixins: [ApiGateway],

	settings: {
		port: config.port,
		ip: "0.0.0.0",
		cors: {
			origin: config.corsOrigins.includes("*") ? "*" : config.corsOrigins,
			methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
			allowedHeaders: ["Authorization", "Content-Type", "X-Request-Id"],
			exposedHeaders: ["Location", "X-Request-Id"],
			maxAge: 3600
		},
		routes: [
			{
				path: "/",
				whitelist: ["patients.*"],
				// REST paths come from each action's `rest` definition, next to its params.
				autoAliases: true,
				mappingPolicy: "restrict",
				bodyParsers: {
					json: { strict: true, limit: config.bodyLimit },
					urlencoded: false
				},
				logging: true
			}
		],
		log4XXResponses: false,
		logRequestParams: null,
		logResponseData: null
	},

	methods: {
		/** Every failure leaves as `{ name, message, code, type, data }` with a 4xx or 5xx status; 5xx details stay in the log. */
		sendError(req: IncomingMessage, res: ServerResponse, err: ErrorLike) {
			const clientError = toClientError(err);
			if (clientError.code >= 500 && clientError.code !== 503) this.logger.error(`${req.method} ${req.url} failed`, err);
			return defaultSendError.call(this, req, res, clientError);
		}
	}
};

export default ApiService;
