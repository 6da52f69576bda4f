// qplay's graph view (anywidget): draws the graph the kernel laid out (`svg`) once, then
// recolours it from `overlays` by the chosen `overlay`, shows the tooltip of what the pointer is
// over, and on a click on a box or badge sets `selected` to its tensor and, when `links` names
// a dropdown, picks that tensor there (the kernel then reruns the cells reading the dropdown).

const PLAIN = ['#ffffff', '#111111'];
const LINE = '#555555';

function render({ model, el }) {
  el.classList.add('qplay-graph-view');
  const part = (tag, name) => {
    const e = document.createElement(tag);
    e.className = name;
    return e;
  };
  const bar = part('div', 'qplay-graph-bar');
  const label = document.createElement('label');
  label.textContent = 'overlay ';
  const select = part('select', 'qplay-graph-overlay');
  label.appendChild(select);
  const note = part('span', 'qplay-graph-note');
  bar.append(label, note);
  const legend = part('div', 'qplay-graph-legend');
  const body = part('div', 'qplay-graph-body');
  const tip = part('div', 'qplay-graph-tip');
  tip.hidden = true;
  el.append(bar, legend, body, tip);

  const overlays = () => model.get('overlays') || {};
  const figure = () => (overlays()[model.get('overlay')] ? model.get('overlay') : 'none');
  let linked = null; // { ref, model } of the linked dropdown

  function options() {
    const o = overlays();
    const names = Object.keys(o).sort((a, b) => (o[a].rank ?? 0) - (o[b].rank ?? 0));
    const now = [...select.options].map((op) => op.value);
    if (now.join('\n') !== names.join('\n')) {
      select.replaceChildren(...names.map((n) => {
        const op = document.createElement('option');
        op.value = n;
        op.textContent = n;
        op.title = o[n].caption || '';
        return op;
      }));
    }
    select.value = figure();
  }

  function recolour() {
    options();
    const data = overlays()[figure()] || {};
    legend.innerHTML = data.legend || '';
    const paint = data.paint || {};
    for (const node of body.querySelectorAll('.qplay-paint, .qplay-paint-fill, .qplay-line, text')) {
      const group = node.closest('[data-tensor]');
      if (!group) continue;
      const p = paint[group.dataset.tensor];
      const [fill, ink] = p || PLAIN;
      if (node.classList.contains('qplay-paint')) {
        node.setAttribute('stroke', p ? fill : LINE);
        node.setAttribute('stroke-width', p ? '3' : '1.4');
      } else if (node.classList.contains('qplay-line')) {
        node.setAttribute('stroke-width', p ? '4.2' : '2.6');
      } else if (node.classList.contains('qplay-paint-fill')) {
        node.setAttribute('fill', fill);
      } else {
        node.setAttribute('fill', ink);
      }
    }
  }

  // The tensor outlined: the linked dropdown's choice, else the last click.
  function current() {
    if (linked) {
      const labels = linked.model.get('_options_labels') || [];
      return labels[linked.model.get('index')] ?? null;
    }
    return model.get('selected');
  }

  function outline() {
    const t = current();
    for (const g of body.querySelectorAll('.qplay-node, .qplay-badge')) {
      g.classList.toggle('qplay-selected', !!t && g.dataset.tensor === t);
    }
  }

  function draw() {
    body.innerHTML = model.get('svg') || '';
    // The view's own tooltip replaces the drawing's <title>s (which saved outputs keep).
    body.querySelectorAll('title').forEach((t) => t.remove());
    recolour();
    outline();
  }

  async function link() {
    const ref = model.get('links');
    if (linked && linked.ref !== ref) {
      linked.model.off('change:index', outline);
      linked = null;
    }
    if (ref && !linked) {
      const m = await model.widget_manager.get_model(ref.replace(/^IPY_MODEL_/, ''));
      linked = { ref, model: m };
      m.on('change:index', outline);
    }
    outline();
  }

  async function pick(tensor) {
    note.textContent = '';
    model.set('selected', tensor);
    model.save_changes();
    if (!linked) return;
    const d = linked.model;
    const i = (d.get('_options_labels') || []).indexOf(tensor);
    if (i < 0) {
      note.textContent = `${tensor} is not one of the choices of "${d.get('description')}"`;
    } else if (d.get('index') !== i) {
      d.set('index', i);
      d.save_changes();
    }
    outline();
  }

  select.addEventListener('change', () => {
    model.set('overlay', select.value);
    model.save_changes();
    recolour();
  });
  body.addEventListener('click', (e) => {
    const g = e.target.closest('.qplay-node, .qplay-badge');
    if (g && g.dataset.tensor) pick(g.dataset.tensor);
  });
  body.addEventListener('mousemove', (e) => {
    const g = e.target.closest('[data-tip]');
    const text = g && (overlays()[figure()] || {}).tips?.[Number(g.dataset.tip)];
    if (!text) {
      tip.hidden = true;
      return;
    }
    tip.textContent = text;
    tip.hidden = false;
    const r = el.getBoundingClientRect();
    tip.style.left = `${e.clientX - r.left + 14}px`;
    tip.style.top = `${e.clientY - r.top + 14}px`;
  });
  body.addEventListener('mouseleave', () => { tip.hidden = true; });

  const handlers = [
    ['change:svg', draw],
    ['change:overlays', recolour],
    ['change:overlay', recolour],
    ['change:selected', outline],
    ['change:links', link],
  ];
  for (const [event, f] of handlers) model.on(event, f);
  draw();
  link();
  return () => {
    for (const [event, f] of handlers) model.off(event, f);
    if (linked) linked.model.off('change:index', outline);
  };
}

export default { render };
