/** The page's DOM helpers. Every string from the server goes in as text (h's children, textContent), never as markup. */

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** A tiny element builder; children are text unless they are nodes. */
export function h(tag: string, attrs: Record<string, string | boolean | undefined> = {}, ...kids: Array<Node | string | null | undefined | false>): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k !== null && k !== undefined && k !== false) el.append(k);
  return el;
}

export const option = (value: string, label: string, sel = false): HTMLOptionElement => new Option(label, value, sel, sel);

/** A Copy button for the text of `src` (an input's value, else its text). */
export function copyButton(btn: HTMLElement, src: HTMLElement): void {
  btn.addEventListener('click', () => {
    const text = src instanceof HTMLInputElement ? src.value : (src.textContent ?? '');
    const done = () => {
      btn.textContent = 'Copied';
      setTimeout(() => (btn.textContent = 'Copy'), 1500);
    };
    // The Clipboard API needs a secure context (https or localhost); otherwise select the text.
    const fallback = () => {
      if (!(src instanceof HTMLInputElement)) return;
      src.focus();
      src.select();
      if (document.execCommand('copy')) done();
    };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  });
}

/** A read-only input holding `text` with its Copy button (the recipes' pull and FROM lines). */
export function copyLine(text: string, label: string): HTMLElement {
  const input = h('input', { readonly: true, spellcheck: 'false', 'aria-label': label }) as HTMLInputElement;
  input.value = text;
  const btn = h('button', { type: 'button', class: 'btn small', 'aria-label': `Copy ${label}` }, 'Copy');
  copyButton(btn, input);
  return h('div', { class: 'cp' }, input, btn);
}
