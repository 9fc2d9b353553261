r"""Sigma regular expressions (PCRE, unanchored search) in Lucene's regexp dialect, and Lucene's cost budget.

A Sigma ``|re`` value is parsed into a small syntax tree, which is then

* rendered in Lucene's dialect: Lucene anchors every regexp, so unanchored ends get ``.*``; PCRE escapes
  (``\/``, ``\.``, ``\t``, ``\x41``, ``\d``, ``\w``, ``\s``, ...) become the literal or class they stand for;
  Lucene's operator characters (``@&~<>#"``) are escaped; ``/`` is left bare because the pySigma Lucene
  backend escapes it once for the ``/.../`` query syntax (escaping it here too made ``\/`` a literal
  backslash);
* checked against Elasticsearch's limits: ``index.max_regex_length`` (1000 characters of the query) and
  Lucene's determinization budget (``max_determinized_states`` 10000: Lucene spends at most ten times that in
  "effort", the summed size of the NFA state sets it builds), plus a bound on the automaton built before
  determinization (nested counted repeats multiply it). A regexp over budget is refused before it reaches
  the node: there, building its automaton is neither bounded by the search timeout nor cancellable.

Constructs Lucene cannot express (look-arounds, back-references, word boundaries, anchors inside the
pattern, inline flags other than a leading ``(?i)``) are refused with a clear error, never approximated.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REGEX_LENGTH = 1000  # Elasticsearch index.max_regex_length
MAX_DETERMINIZED_STATES = 10_000  # Elasticsearch/Lucene max_determinized_states
DETERMINIZE_EFFORT = 10 * MAX_DETERMINIZED_STATES  # Lucene's work limit: summed NFA set sizes
MAX_NFA_STATES = 10_000  # automaton size before determinization
MAX_CODE_POINT = 0x10FFFF
LUCENE_OPERATORS = frozenset('@&~<>#"')

Interval = tuple[int, int]


class RegexError(ValueError):
    """A regular expression this project cannot run on Elasticsearch, with the reason."""


# -- syntax tree -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CharSet:
    """A set of code points (a literal is a one-point set); ``dot`` renders as Lucene's ``.``."""

    intervals: tuple[Interval, ...]
    dot: bool = False


@dataclass(frozen=True)
class Concat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    node: Node
    low: int
    high: int | None  # None: unbounded


Node = CharSet | Concat | Alt | Repeat
ANY = CharSet(((0, MAX_CODE_POINT),), dot=True)


def _normalise(intervals: list[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _negate(intervals: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out, nxt = [], 0
    for lo, hi in intervals:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


def _fold(intervals: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """Each member replaced by its lowercase form (values on ``.ci`` fields are lowercase)."""
    out: list[Interval] = []
    for lo, hi in intervals:
        if hi - lo > 4096:
            out.append((lo, hi))  # wide ranges hold the lowercase forms of their letters already
            continue
        for c in map(chr, range(lo, hi + 1)):
            low = c.lower() if len(c.lower()) == 1 else c
            out.append((ord(low), ord(low)))
    return _normalise(out)


CLASS_ESCAPES: dict[str, tuple[Interval, ...]] = {
    "d": ((48, 57),),
    "w": _normalise([(48, 57), (65, 90), (95, 95), (97, 122)]),
    "s": _normalise([(9, 13), (32, 32)]),
}
CONTROL_ESCAPES = {"t": 9, "n": 10, "r": 13, "f": 12, "v": 11, "a": 7, "e": 27, "0": 0}
UNSUPPORTED_ESCAPES = {"b": "word boundary \\b", "B": "word boundary \\B", "A": "anchor \\A", "Z": "anchor \\Z",
                       "z": "anchor \\z", "G": "anchor \\G", "p": "Unicode property \\p", "P": "Unicode property \\P",
                       "k": "named back-reference \\k", "K": "match reset \\K", "Q": "quoting \\Q", "E": "quoting \\E",
                       "c": "control escape \\c", "X": "grapheme \\X", "R": "line break \\R", "h": "class \\h",
                       "H": "class \\H", "N": "class \\N"}


class _Parser:
    def __init__(self, pattern: str, fold: bool = False):
        self.p, self.i, self.fold = pattern, 0, fold

    def charset(self, intervals: list[Interval] | tuple[Interval, ...], negated: bool = False) -> CharSet:
        """Members folded to lowercase first (for ``.ci`` fields), then negated: PCRE's (?i)[^a] excludes a and A."""
        members = _fold(_normalise(list(intervals))) if self.fold else _normalise(list(intervals))
        return CharSet(_negate(members) if negated else members)

    def error(self, what: str) -> RegexError:
        return RegexError(f"{what} at position {self.i} of {self.p!r}")

    def peek(self, s: str = "") -> bool:
        return self.p.startswith(s, self.i) if s else self.i < len(self.p)

    def parse(self) -> list[tuple[bool, Node, bool]]:
        """Top level: alternatives, each with its own ``^``/``$`` anchors (start?, node, end?)."""
        branches = []
        while True:
            start = self.peek("^")
            if start:
                self.i += 1
            node, end = self.sequence(top=True)
            branches.append((start, node, end))
            if not self.peek("|"):
                break
            self.i += 1
        if self.peek():
            raise self.error("unbalanced ')'")
        return branches

    def alternation(self) -> Node:
        options = [self.sequence()[0]]
        while self.peek("|"):
            self.i += 1
            options.append(self.sequence()[0])
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self, top: bool = False) -> tuple[Node, bool]:
        items: list[Node] = []
        end = False
        while self.peek() and not self.peek("|") and not self.peek(")"):
            if self.peek("$"):
                self.i += 1
                if top and (not self.peek() or self.peek("|")):
                    end = True
                    break
                raise self.error("anchor '$' inside the pattern (Lucene anchors whole values only)")
            if self.peek("^"):
                raise self.error("anchor '^' inside the pattern (Lucene anchors whole values only)")
            items.append(self.quantified(self.atom()))
        return (items[0] if len(items) == 1 else Concat(tuple(items))), end

    def atom(self) -> Node:
        ch = self.p[self.i]
        if ch == "(":
            self.i += 1
            if self.peek("?"):
                self.group_prefix()
            node = self.alternation()
            if not self.peek(")"):
                raise self.error("missing ')'")
            self.i += 1
            return node
        if ch == "[":
            return self.char_class()
        if ch == ".":
            self.i += 1
            return ANY
        if ch == "\\":
            return self.charset(self.escape(in_class=False))
        if ch in "*+?{" and not (ch == "{" and not self._counted()):
            raise self.error(f"quantifier {ch!r} without anything to repeat")
        self.i += 1
        return self.charset(((ord(ch), ord(ch)),))

    def group_prefix(self) -> None:
        for prefix in ("?:", "?P<", "?<"):
            if self.peek(prefix):
                if prefix == "?<" and (self.peek("?<=") or self.peek("?<!")):
                    break
                self.i += len(prefix)
                if prefix != "?:":
                    close = self.p.find(">", self.i)
                    if close < 0:
                        raise self.error("unterminated group name")
                    self.i = close + 1
                return
        raise self.error("look-around or inline flag group (not supported by Lucene)")

    def _counted(self) -> bool:
        j = self.p.find("}", self.i)
        body = self.p[self.i + 1:j] if j > 0 else ""
        lo, _, hi = body.partition(",")
        return j > 0 and (lo.isdigit() or (lo == "" and "," in body and hi.isdigit())) and (hi == "" or hi.isdigit())

    def quantified(self, node: Node) -> Node:
        while self.peek():
            ch = self.p[self.i]
            if ch in "*+?":
                self.i += 1
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
            elif ch == "{" and self._counted():
                j = self.p.index("}", self.i)
                lo, comma, hi = self.p[self.i + 1:j].partition(",")
                low = int(lo or 0)
                high = (int(hi) if hi else None) if comma else low
                if high is not None and high < low:
                    raise self.error(f"repeat {{{lo},{hi}}} with max below min")
                self.i = j + 1
            else:
                return node
            if self.peek("?") or self.peek("+"):
                self.i += 1  # lazy / possessive: same set of matching values
            node = Repeat(node, low, high)
        return node

    def escape(self, in_class: bool) -> tuple[Interval, ...]:
        self.i += 1
        if not self.peek():
            raise self.error("trailing backslash")
        ch = self.p[self.i]
        self.i += 1
        if ch.lower() in CLASS_ESCAPES:
            base = CLASS_ESCAPES[ch.lower()]
            return base if ch.islower() else _negate(base)
        if ch in CONTROL_ESCAPES and not (ch == "0" and self.peek() and self.p[self.i].isdigit()):
            return ((CONTROL_ESCAPES[ch],) * 2,)
        if ch in "xu":
            return ((self.hex_escape(ch),) * 2,)
        if ch == "b" and in_class:
            return ((8, 8),)
        if ch in UNSUPPORTED_ESCAPES:
            raise self.error(f"{UNSUPPORTED_ESCAPES[ch]} (not supported by Lucene)")
        if ch.isdigit():
            raise self.error("back-reference or octal escape (not supported by Lucene)")
        if ch.isalnum():
            raise self.error(f"unknown escape \\{ch}")
        return ((ord(ch), ord(ch)),)

    def hex_escape(self, kind: str) -> int:
        if kind == "x" and self.peek("{"):
            j = self.p.find("}", self.i)
            digits, self.i = self.p[self.i + 1:j], j + 1
        else:
            n = 2 if kind == "x" else 4
            digits, self.i = self.p[self.i:self.i + n], self.i + n
        try:
            value = int(digits, 16)
        except ValueError:
            raise self.error(f"bad \\{kind} escape") from None
        if not 0 <= value <= MAX_CODE_POINT:
            raise self.error(f"\\{kind} escape outside Unicode")
        return value

    def char_class(self) -> CharSet:
        self.i += 1
        negated = self.peek("^")
        if negated:
            self.i += 1
        intervals: list[Interval] = []
        first = True
        while True:
            if not self.peek():
                raise self.error("missing ']'")
            if self.peek("]") and not first:
                self.i += 1
                break
            if self.peek("[:"):
                raise self.error("POSIX class [:...:] (not supported)")
            lo = self.class_member()
            first = False
            if len(lo) == 1 and lo[0][0] == lo[0][1] and self.peek("-") and self.i + 1 < len(self.p) \
                    and self.p[self.i + 1] != "]":
                self.i += 1
                hi = self.class_member()
                if len(hi) != 1 or hi[0][0] != hi[0][1] or hi[0][0] < lo[0][0]:
                    raise self.error("bad range in character class")
                intervals.append((lo[0][0], hi[0][0]))
            else:
                intervals += lo
        return self.charset(intervals, negated)

    def class_member(self) -> tuple[Interval, ...]:
        if self.peek("\\"):
            return self.escape(in_class=True)
        ch = self.p[self.i]
        self.i += 1
        return ((ord(ch), ord(ch)),)


# -- parse / render ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LuceneRegex:
    """A translated expression: the Lucene text (``/`` bare) and its tree (for the budget)."""

    text: str
    tree: Node


def parse(pattern: str, fold: bool = False) -> Node:
    """The whole-value language of an unanchored PCRE search as a tree (anchors resolved; ``fold``: members
    lowercased, for ``.ci`` fields)."""
    branches = _Parser(pattern, fold).parse()
    trees = []
    for start, node, end in branches:
        parts = ([] if start else [Repeat(ANY, 0, None)]) + [node] + ([] if end else [Repeat(ANY, 0, None)])
        trees.append(Concat(tuple(parts)))
    return trees[0] if len(trees) == 1 else Alt(tuple(trees))


def _char(cp: int) -> str:
    ch = chr(cp)
    return ch if ch.isalnum() or ch == "/" or ch in " _" else "\\" + ch


def _render(node: Node) -> str:
    if isinstance(node, CharSet):
        if node.dot:
            return "."
        ivs = node.intervals
        if len(ivs) == 1 and ivs[0][0] == ivs[0][1]:
            return _char(ivs[0][0])
        negated = ivs and ivs[-1][1] == MAX_CODE_POINT and len(_negate(ivs)) < len(ivs)
        shown = _negate(ivs) if negated else ivs
        if not shown:
            return "."
        body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in shown)
        return f"[{'^' if negated else ''}{body}]"
    if isinstance(node, Concat):
        return "".join(_group(i, isinstance(i, Alt)) for i in node.items) or "()"
    if isinstance(node, Alt):
        return "|".join(_render(o) for o in node.options)
    inner = _group(node.node, not isinstance(node.node, CharSet))
    if (node.low, node.high) == (0, None):
        return inner + "*"
    if (node.low, node.high) == (1, None):
        return inner + "+"
    if (node.low, node.high) == (0, 1):
        return inner + "?"
    if node.high == node.low:
        return f"{inner}{{{node.low}}}"
    return f"{inner}{{{node.low},{'' if node.high is None else node.high}}}"


def _group(node: Node, wrap: bool) -> str:
    text = _render(node)
    return f"({text})" if wrap else text


def translate(pattern: str, lowercase: bool = False) -> LuceneRegex:
    """PCRE search ``pattern`` (inline flags already split off) as a Lucene regexp; ``lowercase`` for ``.ci``
    fields (literals and classes folded to lowercase). Raises RegexError for what Lucene cannot express."""
    tree = parse(pattern, lowercase)
    return LuceneRegex(_render(tree), tree)


# -- budget ---------------------------------------------------------------------------------------------------
def _nfa_size(node: Node) -> int:
    if isinstance(node, CharSet):
        return 2
    if isinstance(node, Concat):
        return sum(map(_nfa_size, node.items)) + 1
    if isinstance(node, Alt):
        return sum(map(_nfa_size, node.options)) + 2
    copies = max(node.low, 1) + (1 if node.high is None else node.high - node.low)
    return copies * _nfa_size(node.node) + 2


class _Nfa:
    """Thompson automaton over disjoint code-point classes; epsilon moves resolved per state set."""

    def __init__(self, boundaries: list[int]):
        self.boundaries = boundaries  # sorted starts of the elementary classes
        self.eps: list[list[int]] = []
        self.moves: list[list[tuple[int, int]]] = []  # (class bitmask, target)

    def state(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def mask(self, intervals: tuple[Interval, ...]) -> int:
        import bisect

        bits = 0
        for lo, hi in intervals:
            for k in range(bisect.bisect_left(self.boundaries, lo), bisect.bisect_right(self.boundaries, hi)):
                bits |= 1 << k
        return bits

    def build(self, node: Node) -> tuple[int, int]:
        if isinstance(node, CharSet):
            a, b = self.state(), self.state()
            self.moves[a].append((self.mask(node.intervals), b))
            return a, b
        if isinstance(node, Concat):
            start = end = self.state()
            for item in node.items:
                s, e = self.build(item)
                self.eps[end].append(s)
                end = e
            return start, end
        if isinstance(node, Alt):
            start, end = self.state(), self.state()
            for option in node.options:
                s, e = self.build(option)
                self.eps[start].append(s)
                self.eps[e].append(end)
            return start, end
        start = end = self.state()
        for _ in range(node.low):
            s, e = self.build(node.node)
            self.eps[end].append(s)
            end = e
        if node.high is None:
            s, e = self.build(node.node)
            loop_end = self.state()
            self.eps[end] += [s, loop_end]
            self.eps[e] += [s, loop_end]
            return start, loop_end
        final = self.state()
        self.eps[end].append(final)
        for _ in range(node.high - node.low):
            s, e = self.build(node.node)
            self.eps[end].append(s)
            self.eps[e].append(final)
            end = e
        return start, final

    def closure(self, states: set[int]) -> frozenset[int]:
        todo, seen = list(states), set(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)


def _boundaries(node: Node, out: set[int]) -> None:
    if isinstance(node, CharSet):
        for lo, hi in node.intervals:
            out.add(lo)
            out.add(hi + 1)
    else:
        for child in (node.items if isinstance(node, Concat) else node.options if isinstance(node, Alt)
                      else (node.node,)):
            _boundaries(child, out)


def check_budget(regex: LuceneRegex, query_length: int | None = None) -> None:
    """Refuse a regexp Elasticsearch would reject or stall on (RegexError), mirroring Lucene's limits."""
    length = len(regex.text) if query_length is None else query_length
    if length > MAX_REGEX_LENGTH:
        raise RegexError(f"regular expression of {length} characters exceeds Elasticsearch's index.max_regex_length "
                         f"({MAX_REGEX_LENGTH})")
    size = _nfa_size(regex.tree)
    if size > MAX_NFA_STATES:
        raise RegexError(f"regular expression automaton of about {size} states before determinization (limit "
                         f"{MAX_NFA_STATES}): nested or large counted repeats")
    points = {0}
    _boundaries(regex.tree, points)
    nfa = _Nfa(sorted(p for p in points if p <= MAX_CODE_POINT))
    start, accept = nfa.build(regex.tree)
    _determinize_within_budget(nfa, start, accept)


def _determinize_within_budget(nfa: _Nfa, start: int, accept: int) -> None:
    """Powerset construction counting effort as Lucene does (summed NFA set sizes); RegexError past the limit."""
    important = frozenset(s for s, moves in enumerate(nfa.moves) if moves) | {accept}
    masks = sorted({m for moves in nfa.moves for m, _ in moves})
    # elementary classes that every character set treats alike are one input symbol
    symbols = sorted({tuple(bool(m >> k & 1) for m in masks): k for k in range(len(nfa.boundaries))}.values())
    closures: dict[frozenset[int], frozenset[int]] = {}

    def closed(states: frozenset[int]) -> frozenset[int]:
        if states not in closures:
            closures[states] = nfa.closure(set(states)) & important
        return closures[states]

    first = closed(frozenset({start}))
    seen, work = {first}, [first]
    effort = 0
    while work:
        current = work.pop()
        effort += len(current)
        if effort >= DETERMINIZE_EFFORT or len(seen) > MAX_DETERMINIZED_STATES:
            raise RegexError(f"regular expression too complex to determinize (over Lucene's budget of "
                             f"{MAX_DETERMINIZED_STATES} states / {DETERMINIZE_EFFORT} work)")
        by_mask: dict[int, set[int]] = {}
        for s in current:
            for m, t in nfa.moves[s]:
                by_mask.setdefault(m, set()).add(t)
        for k in symbols:
            nxt = frozenset(t for m, ts in by_mask.items() if m >> k & 1 for t in ts)
            if nxt:
                target = closed(nxt)
                if target not in seen:
                    seen.add(target)
                    work.append(target)


def lucene_regex(pattern: str, lowercase: bool = False) -> str:
    """Translate and check in one step (the Lucene text, ``/`` bare)."""
    regex = translate(pattern, lowercase)
    check_budget(regex)
    return regex.text
