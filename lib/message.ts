// What a channel carries: the message shapes, the sender's credentials, and the size limits.
import { constants } from './native';

/** SCM_MAX_FD: the kernel refuses more descriptors in one message. */
export const MAX_FDS_PER_MESSAGE = constants.MAX_FDS_PER_MESSAGE;
/** Default receive buffer: the largest message (seqpacket/dgram) or chunk (stream) read at once. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024;
/** Upper bound for maxMessageSize (64 MiB). */
export const MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/** One received message. The `fds` are yours once you have it: adopt them or close them. */
export interface Message {
  data: Buffer;
  fds: number[];
  /** The sender's credentials (SCM_CREDENTIALS): on datagrams received by a bindDgram() channel. */
  cred?: PeerCredentials;
}

/** What to send: optional payload bytes and up to 253 descriptors (they stay yours). */
export interface OutgoingMessage {
  data?: Buffer | Uint8Array | string | null;
  fds?: readonly number[];
}

/** The peer process's credentials as the kernel saw them at connect time (SO_PEERCRED). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}
