// What kind of HTTP server a net.Server is, told by duck typing so that node:http and node:http2
// load only for applications that use them. Used by the hand-off's drain and by warmUp().
import type * as http2 from 'node:http2';
import type * as net from 'node:net';

/** An http.Server or https.Server, with the connection controls the drain uses. */
export interface HttpLike extends net.Server {
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

/**
 * An http.Server or https.Server (HTTP/1.x). Not an HTTP/2 server, although a TLS one has
 * closeIdleConnections() too (from tls.Server since Node 19): its sessions need the HTTP/2 drain.
 */
export function isHttp1(server: net.Server): server is HttpLike {
  return typeof (server as Partial<HttpLike>).closeIdleConnections === 'function' && !isHttp2(server);
}

/** An HTTP/2 server, with or without TLS. */
export function isHttp2(server: net.Server): server is http2.Http2Server {
  return typeof (server as Partial<http2.Http2Server>).updateSettings === 'function';
}
