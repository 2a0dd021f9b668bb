// Moved to hack/lib/real-cluster-lock.ts, which hack/ and bench/ import too (docs/architecture.md says why).
export * from '../../hack/lib/real-cluster-lock.ts';
