/**
 * The AWS SDK credential chain's own requests (STS AssumeRoleWithWebIdentity for web identity:
 * EKS IRSA; STS AssumeRole for a profile's role_arn; SSO) through the same proxy and CA bundle
 * as the store's requests. The SDK's clients connect directly and trust Node's CAs only: in a
 * cluster whose egress goes through HTTPS_PROXY, dsfetch reached the store through the proxy
 * (proxy.ts) but never got credentials to sign with (session 27 left this; the AWS CLI and
 * s5cmd send STS through the proxy, and trust AWS_CA_BUNDLE for it).
 *
 * https only: those endpoints are https. Instance metadata and container credentials
 * (169.254.169.254, 169.254.170.2) are requested by the SDK with Node's default agent,
 * directly: a proxy would answer with its own host's credentials, if any.
 */

import type { Agent as HttpsAgent } from "node:https";
import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import type { ConnectionOptions } from "node:tls";
import { checkHttpsProxy, ProxyTunnel, proxyFor } from "./proxy.ts";
import { httpsModule, tlsModule } from "./tls-module.ts";

type Env = Readonly<Record<string, string | undefined>>;

/**
 * What to give the chain's clients (`clientConfig.requestHandler`), or undefined when neither
 * an https proxy nor a CA bundle is set (the SDK's own handler is then the same thing).
 */
export function credentialChainHandler(
  env: Env,
  tlsOptions: ConnectionOptions | undefined,
): { httpsAgent: HttpsAgent } | undefined {
  const proxied = Boolean(env.HTTPS_PROXY || env.https_proxy);
  if (!proxied && tlsOptions === undefined) return undefined;
  // A malformed setting is USAGE now, not an error of the chain's first request.
  checkHttpsProxy(env);
  return { httpsAgent: new (proxiedHttpsAgent())(env, tlsOptions) };
}

/** Made when first needed: node:https is loaded then, not at start-up (tls-module.ts). */
let ProxiedHttpsAgent: ReturnType<typeof defineProxiedHttpsAgent> | undefined;

function proxiedHttpsAgent(): ReturnType<typeof defineProxiedHttpsAgent> {
  ProxiedHttpsAgent ??= defineProxiedHttpsAgent(httpsModule().Agent);
  return ProxiedHttpsAgent;
}

function defineProxiedHttpsAgent(Agent: typeof HttpsAgent) {
  /** An https agent whose connections go through a CONNECT tunnel where proxyFor says so. */
  return class ProxiedHttpsAgent extends Agent {
    private readonly env: Env;

    constructor(env: Env, tlsOptions: ConnectionOptions | undefined) {
      // No keep-alive: STS is asked about once an hour, and an idle connection through a
      // tunnel cannot be unref'd (ProxyTunnel's socket stays referenced): the process would
      // wait for STS or the proxy to close it before exiting (found in review).
      super({ keepAlive: false, maxSockets: 8, ...(tlsOptions ?? {}) });
      this.env = env;
    }

    override createConnection(
      options: ConnectionOptions & { host?: string; port?: number | string },
      callback?: (error: Error | null, socket: Duplex) => void,
    ): Duplex | null | undefined {
      const host = (options.host ?? "localhost").replace(/^\[(.*)\]$/, "$1");
      const port = Number(options.port ?? 443);
      const proxy = proxyFor(host, port, true, this.env);
      if (proxy === undefined) {
        return (
          super.createConnection as (
            options: ConnectionOptions,
            callback?: (error: Error | null, socket: Duplex) => void,
          ) => Duplex
        ).call(this, options, callback);
      }
      return tlsModule().connect({
        ...options,
        socket: new ProxyTunnel(proxy, host, port),
        // SNI names the host asked for (never an IP address, which SNI cannot carry).
        ...(isIP(host) === 0 ? { servername: options.servername ?? host } : {}),
      });
    }
  };
}
