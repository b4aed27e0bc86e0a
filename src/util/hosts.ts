/** Host names and web origins as settings and headers give them (allowedHosts, allowedOrigins, Host, Origin). */

const HOST_NAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62})?)*\.?$/;
const IPV6_RE = /^[0-9a-f:.]{2,45}$/;

/** The host name of a Host header value (or a listen address): lower case, without port, brackets or a final dot. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(1, end);
  }
  // A bare IPv6 address (a listen address such as ::1) has several colons and no port.
  if ((h.match(/:/g) ?? []).length > 1) return h;
  const colon = h.indexOf(':');
  return (colon === -1 ? h : h.slice(0, colon)).replace(/\.$/, '');
}

/** Null when `s` is usable as an `allowedHosts` entry (a DNS name or an IP address, no port), else why not. */
export function hostNameError(s: string): string | null {
  const t = s.trim().toLowerCase();
  const name = t.startsWith('[') && t.endsWith(']') ? t.slice(1, -1) : t;
  if (HOST_NAME_RE.test(name) || (name.includes(':') && IPV6_RE.test(name))) return null;
  return `"${s.slice(0, 100)}" is not a host name such as fairway.example.com or 10.0.0.5 (no scheme, port or path)`;
}

/** An origin in its canonical form (`https://ci.example.com`, default port dropped), or null when `s` is not one. */
export function normalizeOrigin(s: string): string | null {
  const t = s.trim();
  if (!/^https?:\/\/[^/?#@\s]+\/?$/i.test(t)) return null;
  try {
    return new URL(t).origin;
  } catch {
    return null;
  }
}

/** Null when `s` is usable as an `allowedOrigins` entry, else why not. */
export function originError(s: string): string | null {
  return normalizeOrigin(s) === null ? `"${s.slice(0, 100)}" is not an origin such as https://ci.example.com (scheme://host[:port], no path)` : null;
}
