// The reactive notebook in a real JupyterLab: run all, move a slider, see the dependent cell and
// the live view change while the model cell does not rerun, reload the page and see the
// widgets again, interrupt an endless cell and see the old runtime's sliders disabled. Prints a JSON summary; exits non-zero on any failed check.
//
//   node tests/browser/reactive.mjs OUT_DIR

import path from 'node:path';
import { REPO, checkNotebook, cli, waitKernelIdle, screenshotNotebook } from './lab.mjs';

const NOTEBOOK = path.join(REPO, 'notebooks', '02-reactive.ipynb');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rendered text of each code cell's outputs. */
function cellTexts(page) {
  return page.evaluate(() => {
    const w = window.jupyterapp.shell.currentWidget;
    return w.content.widgets.filter((c) => c.model.type === 'code')
      .map((c) => (c.node.querySelector('.jp-Cell-outputWrapper') || {}).innerText || '');
  });
}

async function waitFor(page, what, predicate, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  let texts = [];
  while (Date.now() < deadline) {
    texts = await cellTexts(page);
    if (predicate(texts)) return texts;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}; cells: ${JSON.stringify(texts)}`);
}

cli((outDir) => checkNotebook(NOTEBOOK, outDir, async ({ page, check, log, reopen }) => {
    let texts = await waitFor(page, 'the first run', (t) => t[2].includes('200 images;'));
    check('dependent cell ran once', texts[2].includes('resnet8_int8 loaded 1 time(s)'), texts[2]);
    check('live view drawn', texts[3].includes('20 images per class'), texts[3]);
    await screenshotNotebook(page, path.join(outDir, 'reactive-before.png'), { width: 1300, height: 1000 });

    // Move the slider to its end with the keyboard, as a user would.
    const handle = page.locator('.widget-slider .noUi-handle').first();
    await handle.focus();
    await page.keyboard.press('End');
    log('slider moved to its end');
    texts = await waitFor(page, 'the rerun', (t) => t[2].includes('1000 images;') && t[3].includes('100 images per class'));
    check('dependent cell reran with the new value', texts[2].includes('1000 images;'), texts[2]);
    check('model cell did not rerun', texts[2].includes('resnet8_int8 loaded 1 time(s)'), texts[2]);
    check('live view redrawn', texts[3].includes('= 1000 images in all'), texts[3]);
    await screenshotNotebook(page, path.join(outDir, 'reactive-after.png'), { width: 1300, height: 1000 });

    log('rerun seen; saving and reloading the page');
    // A page reload: the saved outputs hold only widget views; the widget manager asks the
    // kernel for every model's state again (jupyter.widget.control, request_states).
    await page.evaluate(() => window.jupyterapp.commands.execute('docmanager:save'));
    await page.reload({ waitUntil: 'domcontentloaded' });
    await reopen();
    await waitKernelIdle(page);
    let readouts = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !readouts.length) {
      readouts = await page.evaluate(() => [...document.querySelectorAll('.widget-readout')].map((e) => e.innerText.trim()));
      await sleep(250);
    }
    check('widgets come back after a reload with the user\'s value', readouts.includes('100'), JSON.stringify(readouts));
    await screenshotNotebook(page, path.join(outDir, 'reactive-reloaded.png'), { width: 1300, height: 1000 });

    // An interrupt restarts the runtime, which held the widgets' values and callbacks: the
    // sliders must turn disabled rather than keep moving to no effect.
    log('running an endless cell and interrupting it');
    await page.evaluate(async () => {
      const app = window.jupyterapp;
      const nb = app.shell.currentWidget.content;
      nb.activeCellIndex = nb.widgets.length - 1;
      await app.commands.execute('notebook:insert-cell-below');
      nb.activeCell.model.sharedModel.setSource('println!("spinning"); loop { std::hint::spin_loop(); }');
      // Not awaited: running the cell ends only with the interrupt below.
      void app.commands.execute('notebook:run-cell');
    });
    await waitFor(page, 'the endless cell', (t) => t[t.length - 1].includes('spinning'));
    await page.evaluate(() => window.jupyterapp.commands.execute('kernelmenu:interrupt'));
    texts = await waitFor(page, 'the interrupt', (t) => t[t.length - 1].includes('Interrupted'));
    check('the interrupt names the disabled widgets', texts[texts.length - 1].includes('shown disabled'), texts[texts.length - 1]);
    let disabled = 0;
    const until = Date.now() + 30_000;
    while (Date.now() < until && !disabled) {
      disabled = await page.evaluate(() => document.querySelectorAll('.widget-slider .noUi-target[disabled]').length);
      await sleep(250);
    }
    check('the old runtime\'s sliders are disabled', disabled > 0, `${disabled} disabled sliders`);
    await screenshotNotebook(page, path.join(outDir, 'reactive-restarted.png'), { width: 1300, height: 1000 });
}));
