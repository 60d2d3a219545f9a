// Unix socket names: filesystem paths and Linux abstract names ('\0name' or '@name').
import { invalidArgType, invalidArgValue } from './validate';
import { constants } from './native';

/** The socket kinds fdpass speaks. */
export type SocketKind = 'seqpacket' | 'stream' | 'dgram';

export interface UnixName {
  /** The path, or the abstract name without its leading NUL. */
  name: string;
  abstract: boolean;
  /** How the user wrote it, for error messages. */
  display: string;
}

// sun_path is 108 bytes: a path needs its terminating NUL, an abstract name loses its leading NUL.
const MAX_NAME_BYTES = 107;

export function parseName(value: unknown, argName = 'path'): UnixName {
  if (typeof value !== 'string') throw invalidArgType(argName, 'of type string', value);
  if (value.length === 0) throw invalidArgValue(argName, value, 'must be a non-empty socket path or abstract name');
  const abstract = value.startsWith('\0') || value.startsWith('@');
  const name = abstract ? value.slice(1) : value;
  if (!abstract && name.includes('\0')) throw invalidArgValue(argName, value, 'must not contain null bytes');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw invalidArgValue(argName, value, `is longer than ${MAX_NAME_BYTES} bytes, the limit of a Unix socket name`);
  }
  return { name, abstract, display: abstract ? `@${name}` : name };
}

export function socketTypeOf(kind: unknown, argName = 'options.type'): number {
  switch (kind) {
    case undefined:
    case 'seqpacket':
      return constants.SOCK_SEQPACKET;
    case 'stream':
      return constants.SOCK_STREAM;
    case 'dgram':
      return constants.SOCK_DGRAM;
    default:
      throw invalidArgValue(argName, kind, "must be 'seqpacket', 'stream' or 'dgram'");
  }
}

export function kindOf(type: number): SocketKind | undefined {
  if (type === constants.SOCK_SEQPACKET) return 'seqpacket';
  if (type === constants.SOCK_STREAM) return 'stream';
  if (type === constants.SOCK_DGRAM) return 'dgram';
  return undefined;
}
