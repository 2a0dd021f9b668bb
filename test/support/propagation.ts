// Moved to hack/lib/propagation.ts, which hack/ and bench/ import too (docs/architecture.md says why).
export * from '../../hack/lib/propagation.ts';
