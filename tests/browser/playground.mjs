// The playground notebook in a real JupyterLab: run all, move one layer's scale slider and see
// the quick accuracy and the histogram change (the model cell does not rerun); in the model's
// graph choose the xmodel_err overlay and read every box's value on hover (equal to the SQNR
// table's), click a box and see the layer dropdown show its tensor and the edit cell rerun on
// it; press the full-evaluation button and see the progress bar reach its end and the result
// appear, press Reset and see the original numbers back. Prints a JSON summary; exits non-zero on a failed
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

/** The SQNR table of the edit cell: tensor → xmodel_err as printed ("23.45"). */
function sqnrTable(page) {
  return page.evaluate((marker) => {
    const w = window.jupyterapp.shell.currentWidget;
    const cell = w.content.widgets.find((c) => c.model.type === 'code'
      && c.model.sharedModel.getSource().includes(marker));
    const rows = cell ? [...cell.node.querySelectorAll('.qplay-sqnr tbody tr')] : [];
    return Object.fromEntries(rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent))
      .filter((td) => /^-?\d+\.\d+$/.test(td[2])).map((td) => [td[0], td[2]]));
  }, EDIT);
}

/** The graph view's state as the user sees it: chosen overlay, legend text, and each box's
 *  tooltip (the pointer moved over it), by tensor. */
function graphSeen(page) {
  return page.evaluate(() => {
    const v = document.querySelector('.qplay-graph-view');
    if (!v) return null;
    const tips = {};
    for (const g of v.querySelectorAll('.qplay-node')) {
      const box = g.querySelector('rect');
      const r = box.getBoundingClientRect();
      box.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: r.x + 4, clientY: r.y + 4 }));
      const tip = v.querySelector('.qplay-graph-tip');
      if (g.dataset.tensor && !tip.hidden) tips[g.dataset.tensor] = tip.textContent;
    }
    v.querySelector('.qplay-graph-body').dispatchEvent(new MouseEvent('mouseleave'));
    const filled = [...v.querySelectorAll('.qplay-node > rect')].filter((r) => r.getAttribute('fill') !== '#ffffff');
    return {
      overlay: v.querySelector('select.qplay-graph-overlay').value,
      legend: v.querySelector('.qplay-graph-legend').textContent,
      nodes: v.querySelectorAll('.qplay-node').length,
      coloured: filled.length,
      selected: [...v.querySelectorAll('.qplay-node.qplay-selected')].map((g) => g.dataset.tensor),
      tips,
    };
  });
}

/** The layer dropdown's options and choice. */
function layerDropdown(page) {
  return page.evaluate(() => {
    const d = [...document.querySelectorAll('.widget-dropdown')].find((e) => e.innerText.trim().startsWith('layer'));
    const sel = d.querySelector('select');
    return { options: [...sel.options].map((o) => o.textContent), value: sel.options[sel.selectedIndex].textContent };
  });
}
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
    // The model's graph: the xmodel_err overlay, each box's value on hover equal to the table's.
    await page.locator('.qplay-graph-view select.qplay-graph-overlay').selectOption('xmodel_err');
    log('overlay xmodel_err chosen');
    const table = await sqnrTable(page);
    let seen = null;
    for (let i = 0; i < 240; i++) {
      seen = await graphSeen(page);
      if (seen && seen.overlay === 'xmodel_err' && seen.legend.includes('xmodel_err') && seen.coloured > 0
          && Object.values(seen.tips).some((t) => t.includes('xmodel_err:'))) break;
      await sleep(250);
    }
    check('graph drawn with an overlay dropdown and a legend', seen && seen.nodes >= 10 && seen.legend.includes('xmodel_err'),
      JSON.stringify(seen).slice(0, 300));
    check('boxes coloured by the overlay', seen.coloured >= 8, seen.coloured);
    // The graph's static picture (a second output, for nbconvert and GitHub) is in the page but
    // hidden by the view's stylesheet: the graph shows once.
    const twin = await page.evaluate(() => {
      const t = document.querySelector('.qplay-graph-twin');
      const row = t && t.closest('.jp-OutputArea-child');
      return { present: !!t, shown: !!t && t.getClientRects().length > 0, row: row ? row.getBoundingClientRect().height : 0 };
    });
    check('the static twin of the graph is hidden', twin.present && !twin.shown && twin.row === 0, JSON.stringify(twin));
    const compared = Object.entries(table).filter(([t]) => seen.tips[t]);
    const wrong = compared.filter(([t, x]) => !seen.tips[t].includes(`xmodel_err: ${x} dB`));
    check('hover values equal the SQNR table', compared.length >= 8 && wrong.length === 0,
      `${compared.length} compared; wrong: ${JSON.stringify(wrong.map(([t, x]) => [t, x, seen.tips[t]])).slice(0, 600)}`);
    // A real hover shows the tooltip; the picture for the README.
    const first = compared[0][0];
    await page.locator(`.qplay-graph-view .qplay-node[data-tensor="${first}"] rect`).first().hover({ force: true });
    await page.locator('.qplay-graph-view').scrollIntoViewIfNeeded();
    await sleep(300);
    check('tooltip shown on hover', await page.locator('.qplay-graph-view .qplay-graph-tip').isVisible(), first);
    await page.locator('.qplay-graph-view').screenshot({ path: path.join(outDir, 'playground-graph.png') });
    // A click on a box picks its tensor in the layer dropdown; the edit cell reruns on it.
    const layer = await layerDropdown(page);
    const target = layer.options.find((o) => o !== layer.value && seen.tips[o] && o !== first) || layer.options.find((o) => o !== layer.value && seen.tips[o]);
    check('a box for another layer', target, JSON.stringify(layer));
    await page.locator(`.qplay-graph-view .qplay-node[data-tensor="${target}"]`).first().click();
    log(`clicked the box of ${target}`);
    const rerun = await waitFor(page, 'the edit cell on the clicked layer', EDIT, (o) => o.text.startsWith(`${target}: scale`));
    check('the layer dropdown shows the clicked tensor', (await layerDropdown(page)).value === target,
      `${(await layerDropdown(page)).value} vs ${target}`);
    check('the edit sliders act on it', rerun.text.startsWith(`${target}: scale`), rerun.text.slice(0, 120));
    await settled(page, EDIT);
    for (let i = 0; i < 40 && !(await graphSeen(page)).selected.includes(target); i++) await sleep(250);
    check('the clicked box is outlined', (await graphSeen(page)).selected.includes(target), target);

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
