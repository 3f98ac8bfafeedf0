// Figures as the bench reports them, shared by the single-server run and the
// two-instance run: medians of rounds, rounded results, table cells, and the
// collapsed blocks of the markdown page.

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** A result as stored in the JSON: 4 significant figures or so. */
export const round = (value: number) => (Math.abs(value) >= 100 ? Math.round(value * 10) / 10 : Math.round(value * 1000) / 1000);

/** A table cell. */
export function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A collapsed markdown block of list items. */
export const details = (summary: string, items: string[]) => [`<details><summary>${summary}</summary>`, '', ...items.map((item) => `- ${item}`), '', '</details>', ''];
