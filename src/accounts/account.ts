// Accounts and plans as the original's MySQL tables hold them, turned into
// the lookup the handshake uses. Shared by every account source.
import { z } from 'zod';
import { planSchema, UNLIMITED, type Plan } from '../limits';
import { RESTRICT_PUBLISH_MODES, type RestrictPublish } from '../auth/rights';
import { parseOrigins } from '../origins';

export const STATIC_ACCOUNT = '_static';

export interface Account {
  name: string;
  suspended: boolean;
  plan: Plan;
  /** The account's token: the key of its signed access tokens, and sent to its login URL. */
  token?: string;
  /** `properties.loginURL`: where user/PIN sign-ins are checked. */
  loginURL?: string | undefined;
  /** `properties.restrictPublish`: which channel names a signed-in user may publish. */
  restrictPublish?: RestrictPublish | undefined;
  /** Pages (origins) the account's clients may connect from; undefined: any that CORS_ORIGIN allows. */
  allowedOrigins?: ReadonlySet<string> | undefined;
  /** Where this account's webhooks go (properties.webhookURL), signed with its token. */
  webhookURL?: string | undefined;
}

/** A row of `accounts` (properties and meta are JSON text). */
export interface AccountRow {
  /** Tells apart accounts that share a name; sources without ids leave it out. */
  id?: number | null;
  name: string;
  token: string;
  properties: string | null;
  planId: number | null;
}

/** A row of `plans`. */
export interface PlanRow {
  id: number;
  name: string;
  properties: string | null;
}

export interface AccountRows {
  accounts: AccountRow[];
  plans: PlanRow[];
}

/** An http(s) URL, for properties.webhookURL. */
export const webhookUrlSchema = z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }).max(2048);
// A malformed loginURL or restrictPublish is left out rather than hiding the
// whole account: without a loginURL user/PIN sign-in is refused.
const accountPropertiesSchema = z.looseObject({
  suspended: z.unknown().optional(),
  loginURL: z
    .url({ protocol: /^https?$/ })
    .optional()
    .catch(undefined),
  restrictPublish: z.enum(RESTRICT_PUBLISH_MODES).optional().catch(undefined),
  // A list of origins, or one comma-separated string of them.
  allowedOrigins: z.union([z.array(z.string()), z.string()]).nullish(),
  // A bad URL is no URL: it must not cost the site its account.
  webhookURL: webhookUrlSchema.optional().catch(undefined),
});

export function parsePlan(json: string | null): Plan {
  return planSchema.parse(JSON.parse(json || '{}'));
}

/** An account shown under another name because its own was taken. */
export interface RenamedAccount {
  name: string;
  shownAs: string;
}

export interface SkippedRow {
  table: 'accounts' | 'plans';
  name: string;
  reason: string;
}

/**
 * Builds the token index. A row whose JSON cannot be parsed is skipped and
 * reported, so one bad row never hides the others.
 *
 * Channels, usage and stats belong to an account by its name, and the
 * `name` column is not unique: a row whose name is already taken (by an
 * earlier row, or the static token's `_static`) is shown with its id added,
 * so two sites never share channels.
 */
export function indexAccounts(
  rows: AccountRows,
  staticName: string = STATIC_ACCOUNT,
): {
  byToken: Map<string, Account>;
  byName: Map<string, Account>;
  skipped: SkippedRow[];
  renamed: RenamedAccount[];
} {
  const skipped: SkippedRow[] = [];
  const renamed: RenamedAccount[] = [];
  const taken = new Set<string>([staticName]);
  const plans = new Map<number, Plan>();
  for (const row of rows.plans) {
    try {
      plans.set(Number(row.id), parsePlan(row.properties));
    } catch (err) {
      skipped.push({ table: 'plans', name: String(row.name), reason: reasonOf(err) });
    }
  }
  const byToken = new Map<string, Account>();
  const byName = new Map<string, Account>();
  for (const [index, row] of rows.accounts.entries()) {
    if (typeof row.token !== 'string' || row.token === '') continue;
    try {
      const props = accountPropertiesSchema.parse(JSON.parse(row.properties || '{}'));
      if (row.planId != null && !plans.has(Number(row.planId))) throw new Error(`plan ${row.planId} is missing or unreadable`);
      const name = uniqueName(String(row.name), row.id ?? index + 1, taken);
      if (name !== String(row.name)) renamed.push({ name: String(row.name), shownAs: name });
      const origins = props.allowedOrigins == null ? undefined : [props.allowedOrigins].flat().join(',');
      const account: Account = {
        name,
        suspended: props.suspended === true || props.suspended === 1 || props.suspended === 'true',
        plan: row.planId == null ? UNLIMITED : (plans.get(Number(row.planId)) as Plan),
        token: row.token,
        webhookURL: props.webhookURL,
        loginURL: props.loginURL,
        restrictPublish: props.restrictPublish,
        // An empty list is no list: the account is not locked out by a blank field.
        allowedOrigins: origins?.trim() ? parseOrigins(origins) : undefined,
      };
      byToken.set(row.token, account);
      byName.set(name, account);
    } catch (err) {
      skipped.push({ table: 'accounts', name: String(row.name), reason: reasonOf(err) });
    }
  }
  return { byToken, byName, skipped, renamed };
}

function uniqueName(name: string, id: number, taken: Set<string>): string {
  let unique = name;
  for (let n = 1; taken.has(unique); n++) unique = n === 1 ? `${name} #${id}` : `${name} #${id}.${n}`;
  taken.add(unique);
  return unique;
}

function reasonOf(err: unknown): string {
  if (err instanceof z.ZodError) return err.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ');
  return err instanceof Error ? err.message : String(err);
}
