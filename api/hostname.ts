// Gateway API hostnames (listeners, HTTPRoutes, the gateway proxy's virtual hosts): "*" (any),
// "*.suffix" (one or more labels before the suffix) or an exact name. One home for the rule the
// operator (attaching routes, docs/ingress.md) and the gateway proxy (picking a virtual host) use.

/** Whether pattern `p` covers `h` (a hostname, or a wildcard no wider than `p`). */
export function hostnameCovers(p: string, h: string): boolean {
  if (p === '*' || p === h) return true;
  if (!p.startsWith('*.')) return false;
  const suffix = p.slice(1);
  return h.endsWith(suffix) && h.length > suffix.length;
}
