// TLS in front of the test's S3 server (a store with a private certificate authority): bytes
// pass through, so signatures for the front's host:port stay valid. Used by the TLS store and
// HTTP proxy tests.
import { connect } from "node:net";
import { createServer as createTlsServer, type Server } from "node:tls";

export interface TlsFront {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 (a free port) and forwards every connection to `targetEndpoint`. */
export async function startTlsFront(
  certificate: { key: string; cert: string },
  targetEndpoint: string,
): Promise<TlsFront> {
  const target = new URL(targetEndpoint);
  const server = createTlsServer(certificate, (socket) => {
    const upstream = connect(Number(target.port), target.hostname);
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on("error", close);
    upstream.on("error", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    server,
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
