// Moved to hack/lib/cluster.ts, which hack/ and bench/ import too (docs/architecture.md says why).
export * from '../../hack/lib/cluster.ts';
