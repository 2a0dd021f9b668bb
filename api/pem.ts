// PEM text without an X.509 library, and what a proxy reports of the roots it trusts, for the
// proxy and the operator alike (api/pki.ts loads @peculiar/x509; this does not).

/** Every certificate in a PEM text, normalised (one block each, trailing newline). */
export function splitPem(text: string | undefined): string[] {
  return (
    (text ?? '')
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
      ?.map((p) => `${p.replace(/\r/g, '')}\n`) ?? []
  );
}

/**
 * What a proxy's workload identity trusts and presents (its /config/version answer), for the
 * operator's root rotation, which issues from a new root only once every sidecar trusts it: the
 * SHA-256 fingerprints (as node:crypto X509Certificate.fingerprint256) of the roots in ca.crt,
 * and of the one that issued the certificate chain in tls.crt (absent when none of them did).
 */
export interface TrustSummary {
  roots: string[];
  signedBy?: string;
}

/** A short text that changes when the trust summary does (the `trust` parameter of /config/version). */
export function trustKey(t: TrustSummary | null | undefined): string {
  return t ? `${t.roots.join(',')};${t.signedBy ?? ''}` : '';
}
