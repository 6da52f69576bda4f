// The playground notebook in a real JupyterLab: run all, move one layer's scale slider and see
// the quick accuracy and the histogram change (the model cell does not rerun), press the
// full-evaluation button and see the progress bar reach its end and the result appear, press
// Reset and see the original numbers back. Prints a JSON summary; exits non-zero on a failed
// check. Screenshots go to OUT_DIR.
//
//   node tests/browser/playground.mjs OUT_DIR

import path from 'node:path';
import { REPO, checkNotebook, cli, screenshotNotebook } from './lab.mjs';

const NOTEBOOK = path.join(REPO, 'notebooks', 'playground.ipynb');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Output text and SVG count of the code cell whose source contains `marker`. */
function cellOutput(page, marker) {
  return page.evaluate((marker) => {
    const w = window.jupyterapp.shell.currentWidget;
    const cell = w.content.widgets.find((c) => c.model.type === 'code'
      && c.model.sharedModel.getSource().includes(marker));
    if (!cell) return null;
    const out = cell.node.querySelector('.jp-Cell-outputWrapper');
    return {
      text: out ? out.innerText : '',
      svgs: out ? [...out.querySelectorAll('svg, img')].map((s) => (s.outerHTML || '').length) : [],
      progress: out ? [...out.querySelectorAll('.progress-bar')].map((b) => b.style.width) : [],
    };
  }, marker);
}

async function waitFor(page, what, marker, predicate, timeoutMs = 300_000) {
  const deadline = Date.now() + timeoutMs;
  let out = null;
  while (Date.now() < deadline) {
    out = await cellOutput(page, marker);
    if (out && predicate(out)) return out;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}; output: ${JSON.stringify(out).slice(0, 3000)}`);
}

/** The cell's output once it has stopped changing for a second (a rerun overwrites its outputs
 *  one by one: the quick evaluation before the histogram). */
async function settled(page, marker) {
  let last = await cellOutput(page, marker);
  for (;;) {
    await sleep(1000);
    const now = await cellOutput(page, marker);
    if (JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
}

/** The quick-evaluation accuracy line ("… : 74.50 % (149/200) …"). */
const accuracy = (text) => (text.match(/(\d+\.\d+) % \(\d+\/\d+\)/) || [])[0];
const EDIT = 'let v = m.with_scale';
const FULL = 'if run_full.clicks()';

cli((outDir) => checkNotebook(NOTEBOOK, outDir, async ({ page, check, log }) => {
    const before = await waitFor(page, 'the edited version', EDIT, (o) => accuracy(o.text));
    check('quick accuracy shown', accuracy(before.text), before.text);
    check('model loaded once', before.text.includes('loaded 1 time(s)'), before.text);
    await screenshotNotebook(page, path.join(outDir, 'playground.png'), { width: 1300, height: 1000 });

    // Move the scale slider ("scale × k") to its end.
    const handle = page.locator('.widget-slider', { hasText: 'scale × k' }).locator('.noUi-handle').first();
    await handle.focus();
    await page.keyboard.press('End');
    log('scale slider moved');
    await waitFor(page, 'the rerun after the slider', EDIT,
      (o) => accuracy(o.text) && accuracy(o.text) !== accuracy(before.text) && o.text.includes('→'));
    const moved = await settled(page, EDIT);
    check('quick accuracy changed', accuracy(moved.text) !== accuracy(before.text),
      `${accuracy(before.text)} → ${accuracy(moved.text)}`);
    check('histogram redrawn', JSON.stringify(moved.svgs) !== JSON.stringify(before.svgs), JSON.stringify(moved.svgs));
    check('model cell did not rerun', moved.text.includes('loaded 1 time(s)'), moved.text);
    // What JupyterLab saves: the cell's output also carries the rerun's results as HTML, for
    // viewers without widgets (GitHub, nbconvert).
    const saved = await page.evaluate((marker) => {
      const w = window.jupyterapp.shell.currentWidget;
      const cell = w.content.widgets.find((c) => c.model.type === 'code'
        && c.model.sharedModel.getSource().includes(marker));
      const out = cell.model.outputs.toJSON();
      return out.map((o) => (o.data && o.data['text/html']) || '').join('');
    }, EDIT);
    check('saved output holds the new results',
      saved.includes(`${accuracy(moved.text).split(' ')[0]} %`) && saved.includes('<svg'),
      saved.slice(0, 300));
    // The picture for the README: the edited layer, its numbers and its histogram.
    await page.setViewportSize({ width: 1300, height: 1150 });
    await page.evaluate(() => {
      const h = [...document.querySelectorAll('h2')].find((e) => e.textContent.includes('3. Edit one layer'));
      if (h) h.scrollIntoView();
    });
    await sleep(500);
    await page.screenshot({ path: path.join(outDir, 'playground-edit.png') });

    // The full evaluation behind its button.
    await page.getByRole('button', { name: /Evaluate the current version/ }).click();
    log('full evaluation pressed');
    const full = await waitFor(page, 'the full evaluation', FULL,
      (o) => o.text.includes('10,000') && o.text.includes('%') && o.svgs.length >= 2);
    check('progress bar reached its end', full.progress.includes('100%'), JSON.stringify(full.progress));
    check('full result shown', /\d+\.\d+ %/.test(full.text), full.text.slice(0, 200));
    await screenshotNotebook(page, path.join(outDir, 'playground-full.png'), { width: 1300, height: 1000 });

    // Reset: the sliders go back and the original numbers return.
    await page.getByRole('button', { name: 'Reset' }).click();
    log('reset pressed');
    await waitFor(page, 'the reset', EDIT, (o) => accuracy(o.text) === accuracy(before.text));
    const back = await settled(page, EDIT);
    check('original numbers back after reset', accuracy(back.text) === accuracy(before.text),
      `${accuracy(before.text)} vs ${accuracy(back.text)}`);
}));
