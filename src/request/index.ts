export * from './types.js';
export { SpecError, parseBuildRequest, parsePluginArg, CADDY_MODULE, type ParseOptions } from './parse.js';
export { modulePathError, classifyVersionQuery, isExactVersion, isLocalPath, CADDY_VERSION_PATTERN, MODULE_PATH_PATTERN, VERSION_QUERY_PATTERN, whole } from './grammar.js';
export { RANGE_PATTERN, admitted, isPseudoVersion, isVersionRange, newestAdmitted, recipeVersionKind, recipeVersionPattern, type RecipeVersionKind } from './range.js';
export { MAX_TEST_CONFIG, testConfigError, type TestConfig } from './recipe.js';
export { PlatformSet, ARM_VERSIONS, DEFAULT_ARM, hostPlatform, type Platform } from './platform.js';
export { BUILD_FLAGS, LEGACY_BUILD_FLAGS, canonicalJson, canonicalRequest, canonicalSpec, cacheKey, comparePlugins, isCacheKey, rebuildKey } from './key.js';
export { checkResolvedSpec, requestMismatch, storedRequest, type CheckResolvedOptions } from './resolved.js';
