// A throwaway self-signed certificate (P-256, one day, CN=localhost) for the TLS benchmarks
// and tests: openssl writes key.pem and cert.pem into `dir`.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export function selfSignedCert(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', [...args, '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { key, cert };
}
