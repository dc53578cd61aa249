// Shared by the report pages (included into their <script>): the data travels gzip-compressed
// and base64-encoded in <script id="payload">, and every string from the store is shown
// through text nodes only, so nothing a token or a name contains ever becomes markup.

async function loadPayload() {
  const b64 = document.getElementById("payload").textContent.trim();
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// A token of ``vocab`` (id -> text) as a span; newlines and tabs stay visible as ⏎ and →.
function tokenNode(vocab, id, cls) {
  const span = el("span", undefined, cls);
  const text = vocab[id] ?? `<${id}>`;
  for (const part of text.split(/(\n|\t)/)) {
    if (part === "\n") span.appendChild(el("span", "⏎\n", "ws"));
    else if (part === "\t") span.appendChild(el("span", "→\t", "ws"));
    else if (part) span.appendChild(document.createTextNode(part));
  }
  return span;
}
