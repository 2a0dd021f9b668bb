// Aligned tables for people: columns padded to their widest cell, two spaces apart, the last
// column unpadded (as kubectl prints).

export function renderTable(head: string[], rows: string[][]): string {
  const table = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
  return `${table
    .map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n')}\n`;
}
