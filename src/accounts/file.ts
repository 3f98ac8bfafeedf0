// Accounts from a JSON file shaped like the MySQL tables:
// { "plans": [{ "id", "name", "properties" }], "accounts": [{ "name", "token", "properties", "planId" }] }.
// `properties` may be an object or JSON text.
import { readFile } from 'node:fs/promises';
import type { AccountRows } from './account';
import type { AccountSource } from './store';

const asText = (value: unknown): string | null => (value == null ? null : typeof value === 'string' ? value : JSON.stringify(value));

export function fileAccountSource(path: string): AccountSource {
  return {
    description: `file ${path}`,
    async fetch(): Promise<AccountRows> {
      const data = JSON.parse(await readFile(path, 'utf8')) as { accounts?: unknown[]; plans?: unknown[] };
      const rows = (list: unknown) => (Array.isArray(list) ? (list as Record<string, unknown>[]) : []);
      return {
        plans: rows(data.plans).map((p) => ({ id: Number(p.id), name: String(p.name ?? p.id), properties: asText(p.properties) })),
        accounts: rows(data.accounts).map((a) => ({
          id: a.id == null ? null : Number(a.id),
          name: String(a.name),
          token: String(a.token ?? ''),
          properties: asText(a.properties),
          planId: a.planId == null ? null : Number(a.planId),
        })),
      };
    },
    close: async () => undefined,
  };
}
