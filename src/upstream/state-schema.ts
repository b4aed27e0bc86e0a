/**
 * The watcher's record of a recipe, defined once as zod (and importing only zod, so the UI page
 * can take its type too): the promoted set per Caddy version, the candidates tried, the versions
 * found broken. The store's record is checked with it; the API's response schema is it.
 */
import { z } from 'zod';

/** Caddy's module path (a Change or a broken version naming Caddy itself). */
export const CADDY_MODULE = 'github.com/caddyserver/caddy/v2';

const Pin = z.object({ module: z.string(), version: z.string() });
const Change = z.object({ module: z.string(), version: z.string(), from: z.string().optional() });

export const TrialBuildSchema = z.object({
  platform: z.string(),
  id: z.string(),
  status: z.string(),
  error: z.string().optional(),
});

export const PromotedSetSchema = z.object({
  caddyVersion: z.string(),
  plugins: z.array(Pin),
  at: z.string().describe('when it was promoted'),
  builds: z.array(TrialBuildSchema),
});

export const CandidateSchema = z.object({
  caddyVersion: z.string(),
  plugins: z.array(Pin),
  kind: z.enum(['candidate', 'culprit-search']).describe('a candidate, or one change tried alone on the last promoted set'),
  result: z.enum(['promoted', 'passed', 'failed']).describe('passed: a culprit-search trial that built and checked'),
  at: z.string(),
  finishedAt: z.string(),
  reason: z.string().optional().describe('why it failed'),
  culprit: Change.optional().describe('the change that breaks it, when found'),
  builds: z.array(TrialBuildSchema),
});

export const BrokenSchema = z.object({
  module: z.string().describe(`a plugin module path, or ${CADDY_MODULE} for a Caddy version`),
  version: z.string(),
  at: z.string(),
  reason: z.string(),
});

export const RecipeWatchStateSchema = z.object({
  promoted: z.array(PromotedSetSchema).describe('one per Caddy version, newest Caddy first; the first is what :latest serves'),
  history: z.array(CandidateSchema).describe('the candidates tried, newest first'),
  broken: z.array(BrokenSchema).describe('versions that broke this recipe: not tried again'),
  checkedAt: z.string().optional().describe('the last watch run that looked at this recipe'),
});

export type TrialBuild = z.infer<typeof TrialBuildSchema>;
export type PromotedSet = z.infer<typeof PromotedSetSchema>;
export type CandidateRecord = z.infer<typeof CandidateSchema>;
export type BrokenVersion = z.infer<typeof BrokenSchema>;
export type RecipeWatchState = z.infer<typeof RecipeWatchStateSchema>;
