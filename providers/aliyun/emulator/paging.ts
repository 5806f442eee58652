/**
 * The two paging styles: PageNumber/PageSize (answers PageNumber, PageSize, TotalCount) and MaxResults/NextToken
 * (answers NextToken, empty on the last page). Tokens are opaque to callers; a token names the offset it resumes at.
 */
import { errors } from './api-errors.js';
import type { ApiParams } from './params.js';

export interface Page<T> {
  items: T[];
  fields: Record<string, unknown>;
}

export function byPageNumber<T>(all: T[], params: ApiParams, opts: { defaultSize?: number; maxSize: number }): Page<T> {
  const pageNumber = params.int('PageNumber', { min: 1 }) ?? 1;
  const pageSize = params.int('PageSize', { min: 1, max: opts.maxSize }) ?? opts.defaultSize ?? 10;
  const start = (pageNumber - 1) * pageSize;
  return { items: all.slice(start, start + pageSize), fields: { PageNumber: pageNumber, PageSize: pageSize, TotalCount: all.length } };
}

const encodeToken = (offset: number) => Buffer.from(`ci-emu:${offset}`).toString('base64url');

function decodeToken(token: string): number {
  const m = /^ci-emu:(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) throw errors.nextToken();
  return Number(m[1]);
}

export function byNextToken<T>(all: T[], params: ApiParams, opts: { defaultMax: number; max: number; minMax?: number }): Page<T> {
  const max = params.int('MaxResults', { min: opts.minMax ?? 1, max: opts.max }) ?? opts.defaultMax;
  const token = params.nonEmpty('NextToken');
  const start = token === undefined ? 0 : decodeToken(token);
  const items = all.slice(start, start + max);
  const next = start + max < all.length ? encodeToken(start + max) : '';
  return { items, fields: { NextToken: next } };
}

/** Token paging when the caller used MaxResults or NextToken, else page numbers (both styles exist on some calls). */
export function eitherPaging<T>(
  all: T[],
  params: ApiParams,
  opts: { maxResults: number; maxPageSize: number; defaultSize?: number },
): Page<T> {
  if (params.has('MaxResults') || params.has('NextToken')) {
    const page = byNextToken(all, params, { defaultMax: opts.defaultSize ?? 10, max: opts.maxResults });
    return { items: page.items, fields: { ...page.fields, TotalCount: all.length } };
  }
  return byPageNumber(all, params, { maxSize: opts.maxPageSize, defaultSize: opts.defaultSize });
}
