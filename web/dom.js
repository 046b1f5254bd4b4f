// Small helpers for the page's DOM. Text reaches the page through
// textContent only, never as HTML.

export const $ = (id) => document.getElementById(id);

/// A copy of the first element of <template id=…>.
export function fromTemplate(id) {
  return $(id).content.firstElementChild.cloneNode(true);
}

/// Tells screen readers what just happened.
export function announce(text) {
  $("announce").textContent = text;
}

/// Gives the labels of a copied form ids of their own: each label
/// `data-for="x"` names the input of class `x` in `root`.
export function linkLabels(root, prefix) {
  for (const label of root.querySelectorAll("label[data-for]")) {
    const input = root.querySelector("." + label.dataset.for);
    if (!input) continue;
    input.id = `${prefix}-${label.dataset.for}`;
    label.htmlFor = input.id;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
