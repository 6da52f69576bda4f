// The playground as a Voilà app (what `make app` serves): the page shows the results with the
// code hidden and the model's graph widget (anywidget, loaded by Voilà from the venv's
// extensions) coloured by the overlay chosen in it, and moving the scale slider changes the
// quick accuracy (a rerun driven only by
// widget comm messages, the only thing a Voilà page may send). Prints a JSON summary with the
// time to the first results (from the page request; VOILA_ARRIVE_AFTER_S=90 makes the visitor
// arrive after the pre-started kernel has run the notebook); exits non-zero on a failed check.
// Screenshots go to OUT_DIR.
//
//   node tests/browser/voila.mjs OUT_DIR

import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO, cli, launchBrowser, startVoila } from './lab.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const accuracy = (text) => (text.match(/(\d+\.\d+) % \(\d+\/\d+\)/) || [])[0];
// Extra Voilà options (the app's own are in notebooks/voila.json, which Voilà reads from the
// folder it serves, for `make app` and for this test alike).
const VOILA_ARGS = (process.env.VOILA_ARGS || '').split(' ').filter(Boolean);

async function waitText(page, what, predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
    if (predicate(text)) return text;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}; page: ${text.slice(0, 2000)}`);
}

cli(async (outDir) => {
  await fsp.mkdir(outDir, { recursive: true });
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qplay-voila-'));
  const notebook = path.join(dir, 'playground.ipynb');
  for (const file of ['playground.ipynb', 'voila.json']) {
    await fsp.copyFile(path.join(REPO, 'notebooks', file), path.join(dir, file));
  }
  const voila = await startVoila(notebook, VOILA_ARGS);
  const summary = { checks: [] };
  const check = (what, ok, detail) => {
    summary.checks.push({ name: what, ok: !!ok, detail: String(detail).slice(0, 300) });
    if (!ok) throw new Error(`check failed: ${what}: ${detail}`);
  };
  let browser = null;
  try {
    browser = await launchBrowser({ width: 1300, height: 1000 });
    const { page } = browser;
    // A visitor who arrives this long after the app started (to measure pre-started kernels).
    await sleep(Number(process.env.VOILA_ARRIVE_AFTER_S || 0) * 1000);
    const t0 = Date.now();
    await page.goto(voila.url, { timeout: 600_000, waitUntil: 'commit' });
    const before = await waitText(page, 'the first results', (t) => accuracy(t) && t.includes('loaded 1 time(s)'), 600_000);
    summary.first_results_s = +((Date.now() - t0) / 1000).toFixed(1);
    check('quick accuracy shown', accuracy(before), before.slice(0, 200));
    check('code hidden', !before.includes('m.with_scale') && !before.includes('let layers'), before.slice(0, 300));
    const slider = page.locator('.widget-slider', { hasText: 'scale × k' }).locator('.noUi-handle').first();
    await slider.waitFor({ timeout: 120_000 });
    await sleep(2000); // the widgets' comms are up
    // The graph widget: drawn, recoloured by the overlay chosen above it.
    const graph = page.locator('.qplay-graph-view').first();
    await graph.waitFor({ timeout: 120_000 });
    await graph.locator('select.qplay-graph-overlay').selectOption('xmodel_err');
    let drawn = null;
    for (let i = 0; i < 240; i++) {
      drawn = await page.evaluate(() => {
        const v = document.querySelector('.qplay-graph-view');
        return v && {
          nodes: v.querySelectorAll('.qplay-node').length,
          coloured: [...v.querySelectorAll('.qplay-node > rect')].filter((r) => r.getAttribute('fill') !== '#ffffff').length,
          legend: v.querySelector('.qplay-graph-legend').textContent,
        };
      });
      if (drawn && drawn.coloured > 0 && drawn.legend.includes('xmodel_err')) break;
      await sleep(250);
    }
    check('graph widget drawn in Voilà', drawn && drawn.nodes >= 10, JSON.stringify(drawn));
    check('graph recoloured by the chosen overlay', drawn.coloured >= 8 && drawn.legend.includes('xmodel_err'), JSON.stringify(drawn));
    // The graph's static picture (a second output, for nbconvert and GitHub) is in the page but
    // hidden by the view's stylesheet: the graph shows once.
    const twin = await page.evaluate(() => {
      const t = document.querySelector('.qplay-graph-twin');
      return { present: !!t, shown: !!t && t.getClientRects().length > 0 };
    });
    check('the static twin of the graph is hidden', twin.present && !twin.shown, JSON.stringify(twin));
    await sleep(1500); // the graph's cell reran on the overlay change and drew it again
    await graph.screenshot({ path: path.join(outDir, 'voila-graph.png') });
    await page.screenshot({ path: path.join(outDir, 'voila.png'), fullPage: false });
    const t1 = Date.now();
    await slider.focus();
    await page.keyboard.press('End');
    const moved = await waitText(page, 'the rerun after the slider',
      (t) => accuracy(t) && accuracy(t) !== accuracy(before), 120_000);
    summary.slider_to_quick_s = +((Date.now() - t1) / 1000).toFixed(2);
    check('quick accuracy changed', accuracy(moved) !== accuracy(before), `${accuracy(before)} → ${accuracy(moved)}`);
    check('model cell did not rerun', moved.includes('loaded 1 time(s)'), moved.slice(0, 300));
    await sleep(1500);
    await page.screenshot({ path: path.join(outDir, 'voila-moved.png'), fullPage: false });
    summary.consoleErrors = browser.consoleErrors.filter((e) => !e.includes('favicon'));
    return summary;
  } catch (e) {
    if (browser) {
      try { await browser.page.screenshot({ path: path.join(outDir, 'voila-failed.png'), fullPage: true }); } catch { /* ignore */ }
    }
    e.message += `\n--- voila (tail) ---\n${voila.logs().slice(-3000)}`;
    throw e;
  } finally {
    if (browser) await browser.close();
    await voila.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
