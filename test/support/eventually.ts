// Moved to hack/lib/eventually.ts, which hack/ and bench/ import too (docs/architecture.md says why).
export * from '../../hack/lib/eventually.ts';
