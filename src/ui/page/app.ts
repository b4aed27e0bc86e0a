/**
 * Fairway's page: choose a target and plugins, build, follow the log live over the websocket,
 * download. Plain DOM, no framework; every string from the server goes in through textContent.
 * This module only wires the page's parts together: form.ts and plugins.ts (the new-build form),
 * logview.ts (the build card; logstream.ts follows the log, result.ts shows the download),
 * builds.ts (recent builds), agents.ts, recipes.ts, server.ts (header and footer), token.ts (the
 * API token control; api.ts sends it). Pure functions are in format.ts, the API's types in types.ts.
 *
 * With an API token every request carries `Authorization: Bearer`: the log is then followed over
 * SSE with fetch (a browser WebSocket cannot send headers) and downloads are fetched, not linked.
 */
import { loadAgents } from './agents.js';
import { initRecent, loadRecent, markRecent } from './builds.js';
import { $ } from './dom.js';
import { initForm, loadTargets } from './form.js';
import { closeBuild, initBuildView, openBuild, shownBuild, shownId } from './logview.js';
import { initPlugins, search } from './plugins.js';
import { loadRecipes } from './recipes.js';
import { initResult } from './result.js';
import { loadSigning } from './server.js';
import { initTokenControl } from './token.js';

/** Everything the page shows may depend on the token: load it again. */
function reloadAll(): void {
  void loadTargets(true);
  void loadRecent();
  void loadAgents();
  void loadRecipes();
  void loadSigning();
  void search();
  const id = shownId();
  if (id !== undefined) {
    closeBuild();
    openBuild(id);
  }
}

function route(): void {
  const m = /^#\/builds\/([0-9a-zA-Z_-]{1,128})$/.exec(location.hash);
  if (m && shownId() !== m[1]) openBuild(m[1]!);
}

initPlugins();
initForm((b) => {
  openBuild(b.id, b);
  void loadRecent(); // the new build shows in the recent list at once, with its phase
  $('h-build').focus();
});
initBuildView({ opened: markRecent, ended: () => void loadRecent() });
initResult(shownBuild);
initRecent(shownId);
initTokenControl(reloadAll);
window.addEventListener('hashchange', route);
window.addEventListener('popstate', route);

void loadTargets();
void search('');
void loadRecent();
void loadAgents();
void loadRecipes();
void loadSigning();
route();
setInterval(() => {
  if (document.visibilityState === 'visible') {
    void loadRecent();
    void loadAgents();
    void loadRecipes();
  }
}, 15_000);
