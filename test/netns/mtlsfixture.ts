// Moved to hack/lib/mtlsfixture.ts, which bench/ imports too (docs/architecture.md says why).
export * from '../../hack/lib/mtlsfixture.ts';
