"""Python code coloured for the report and the web UI, with no script and nothing from
the network: the standard library's tokenizer finds keywords, strings, comments and
numbers, each wrapped in a span with a `py-*` class (style.css.j2 colours them). The code
is escaped piece by piece; code that does not tokenize is shown escaped and plain."""

from __future__ import annotations

import io
import keyword
import tokenize

from markupsafe import Markup, escape

_CLASSES = {tokenize.COMMENT: "py-com", tokenize.STRING: "py-str", tokenize.NUMBER: "py-num"}
# f-strings are tokens of their own from Python 3.12
for _name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END"):
    if hasattr(tokenize, _name):
        _CLASSES[getattr(tokenize, _name)] = "py-str"


def _css_class(token: tokenize.TokenInfo) -> str | None:
    if token.type == tokenize.NAME and keyword.iskeyword(token.string):
        return "py-kw"
    return _CLASSES.get(token.type)


def highlight(source: str) -> Markup:
    starts = [0]  # where each line begins in `source`, the lines as the tokenizer reads them
    for line in io.StringIO(source):
        starts.append(starts[-1] + len(line))
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):  # an unclosed bracket, a bad dedent
        return escape(source)
    parts, done = [], 0
    for token in tokens:
        css = _css_class(token)
        if css is None:
            continue
        begin = starts[token.start[0] - 1] + token.start[1]
        end = starts[token.end[0] - 1] + token.end[1]
        parts += [
            escape(source[done:begin]),
            Markup('<span class="%s">%s</span>') % (css, source[begin:end]),
        ]
        done = end
    parts.append(escape(source[done:]))
    return Markup("").join(parts)
