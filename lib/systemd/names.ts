// Field names and values of systemd's notify protocol, and fd names (sd_pid_notify_with_fds(3)).
import { invalidArgType, invalidArgValue } from '../validate';

/** systemd's FDNAME_MAX. */
export const MAX_FD_NAME_LENGTH = 255;

/** sd_listen_fds_with_names' name for a descriptor passed without one. */
export const UNNAMED = 'unknown';

/**
 * An fd name as systemd accepts it (fdname_is_valid): 1-255 printable ASCII characters, no ':'
 * (LISTEN_FDNAMES separates names with ':').
 */
export function isFdName(value: string): boolean {
  return value.length > 0 && value.length <= MAX_FD_NAME_LENGTH && /^[\x20-\x7e]+$/.test(value) && !value.includes(':');
}

/** Throws unless `value` is an fd name ({@link isFdName}). */
export function validateFdName(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (!isFdName(value)) {
    throw invalidArgValue(name, value, `must be 1-${MAX_FD_NAME_LENGTH} printable ASCII characters without ':'`);
  }
}

/** A notify field value: one line (a newline would start a new field). */
export function validateFieldValue(value: unknown, name: string): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string or number', value);
  if (value.includes('\n') || value.includes('\0')) throw invalidArgValue(name, value, 'must not contain a newline or a null byte');
  return value;
}

/** A notify field name: upper-case letters, digits and '_', as systemd's own fields. */
export function validateFieldName(value: string, name: string): void {
  if (!/^[A-Z_][A-Z0-9_]*$/.test(value)) throw invalidArgValue(name, value, "must be a field name of A-Z, 0-9 and '_'");
}
