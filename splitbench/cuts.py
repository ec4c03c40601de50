"""Split points of any model, derived from its traced forward graph (``torch.fx``).

Split computing sends exactly one tensor from the edge to the server. In the traced graph
of a model, the position after a node (in execution order) is therefore a valid cut when
exactly one value computed up to there is still needed afterwards, and that value is a
tensor. Parameters and buffers that the graph reads (``get_attr``) do not count: the tail
holds the module that owns them. The model's input counts like any other value, so a cut
inside a block with a skip connection is not valid: the block's input crosses too.

Every cut has a name, chosen the way torchvision's ``create_feature_extractor`` reads
return nodes: a module path names the output of the last operation inside that module.
A cut takes the shallowest module whose last operation it follows (``layer2.1``,
``features.6``), or else the operation's own qualified name (``flatten``,
``blocks.3.add``). Every module path that ends there, and the papers' layer names given
by a zoo model, resolve to the same cut.

>>> from torchvision.models import resnet18
>>> graph = CutGraph.trace(resnet18(), torch.zeros(1, 3, 224, 224))
>>> cut = graph.resolve("layer2")
>>> cut.shape, cut.elements
((128, 28, 28), 100352)
>>> head, tail = graph.split(cut)  # tail(head(x)) == model(x)

MACs follow fvcore's convention (one per fused multiply-add; normalisation one per
element). They are counted once for the whole graph, attributed to each operation, so the
last cut's cumulative count equals fvcore's count of the whole model.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch import fx, nn
from torchvision.models.feature_extraction import LeafModuleAwareTracer

from splitbench.errors import SplitbenchError
from splitbench.macs import count_macs

# Modules that torch.fx cannot trace through and that never hold a cut worth having:
# einops' layers compute their reshape from the input's shape at run time.
_DEFAULT_LEAF_TYPES: tuple[str, ...] = ("einops.layers.torch.Rearrange", "einops.layers.torch.Reduce")


def _einops_functions() -> tuple[Callable[..., Any], ...]:
    """einops' functions, recorded as single operations instead of traced into."""
    try:
        import einops
    except ImportError:
        return ()
    return tuple(getattr(einops, name) for name in ("rearrange", "repeat", "reduce") if hasattr(einops, name))

COMPUTE_OPS = ("call_module", "call_function", "call_method")


@dataclass(frozen=True)
class Cut:
    """A valid split point: the head computes ``node`` (and everything before it), the tail the rest.

    Attributes:
        name: what listings show and ``--at`` takes (``layer2.1``, ``features.6``).
        aliases: other names that resolve here (enclosing module paths that end here, the
            operation's qualified name, the papers' layer names).
        position: index of the last head node in the graph's execution order.
        shape: the transmitted tensor's shape without the batch dimension.
        macs: MACs of the operations since the previous cut.
        cum_macs: MACs of the whole head.
        params: parameters first used since the previous cut.
        cum_params: parameters of the whole head.
        kind: the type of the module (or the function) that produces the tensor.
        node: qualified name of the operation that produces the tensor.
    """

    name: str
    aliases: tuple[str, ...]
    position: int
    shape: tuple[int, ...]
    macs: int
    cum_macs: int
    params: int
    cum_params: int
    kind: str
    node: str

    @property
    def elements(self) -> int:
        return prod(self.shape)

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class NodeInfo:
    """One operation of the traced graph, as ``profile --all-nodes`` lists it."""

    name: str
    op: str
    kind: str
    shape: tuple[int, ...] | None  # None where the value is not a tensor
    macs: int
    params: int
    crossing: tuple[str, ...]  # values that would cross a cut right after this node
    cut: str | None  # the cut's name where exactly one tensor crosses


class _ScopeTracer(LeafModuleAwareTracer):
    """fx tracer that records, for every node, the module path it was traced in.

    ``leaves`` are module paths or type names (``Attention``, ``pkg.mod.Attention``) kept
    whole: their forward is not traced into, so no cut lies inside them. The types in
    ``_DEFAULT_LEAF_TYPES`` and torch.fx's own rule (``torch.nn`` modules) are leaves too.
    ``failed_in`` is the innermost module being traced when tracing broke.
    """

    def __init__(self, leaves: Iterable[str] = ()) -> None:
        super().__init__(autowrap_functions=_einops_functions())
        self.leaves = set(leaves)
        self.current_path = ""
        self.failed_in: str | None = None
        self.scope_of: dict[fx.Node, str] = {}
        self.calls: dict[str, int] = {}  # module path → times its forward was entered

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        kind = f"{type(m).__module__}.{type(m).__qualname__}"
        if module_qualname in self.leaves or kind in self.leaves or type(m).__name__ in self.leaves:
            return True
        return kind in _DEFAULT_LEAF_TYPES or super().is_leaf_module(m, module_qualname)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        outer = self.current_path
        self.current_path = self.path_of_module(m)
        self.calls[self.current_path] = self.calls.get(self.current_path, 0) + 1
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module wins
                self.failed_in = self.current_path
            raise
        finally:
            self.current_path = outer

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **options: Any) -> Any:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **options)
        self.scope_of[proxy.node] = self.current_path
        return proxy


def trace_graph(model: nn.Module, leaf_modules: Iterable[str] = ()) -> tuple[fx.GraphModule, dict[fx.Node, str], set[str]]:
    """``model``'s forward as an fx graph, the module path each node was traced in, and the
    paths of modules whose forward ran more than once (no single output to name a cut by).

    A model that fx cannot trace fails in one line naming the module where tracing broke.
    A model whose top level is a plain ``nn.Sequential`` falls back to the chain of its
    children (each kept whole), so that it can still be cut between them.
    """
    tracer = _ScopeTracer(leaf_modules)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = tracer.trace(model, concrete_args=_defaulted_arguments(model))
    except Exception as error:
        if _is_plain_chain(model) and not set(leaf_modules) >= {name for name, _ in model.named_children()}:
            children = [name for name, _ in model.named_children()]
            return trace_graph(model, [*leaf_modules, *children])
        raise SplitbenchError(_untraceable_message(model, tracer.failed_in, error)) from None
    reused = {path for path, calls in tracer.calls.items() if calls > 1}
    return fx.GraphModule(tracer.root, graph, type(model).__name__), tracer.scope_of, reused


def _defaulted_arguments(model: nn.Module) -> dict[str, Any]:
    """The top-level forward's optional arguments, bound to their defaults for tracing.

    A split runs the model on one input, so an optional argument (timm's ``attn_mask=None``,
    ``is_causal=False``) is a constant. Left symbolic, it becomes a graph input that every
    block reads, and no cut could lie between blocks: it would cross with the activations.
    """
    parameters = list(inspect.signature(model.forward).parameters.values())[1:]
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _is_plain_chain(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward


def _untraceable_message(model: nn.Module, failed_in: str | None, error: Exception) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if failed_in:
        module = model.get_submodule(failed_in)
        return (
            f"cannot trace {type(model).__name__}: torch.fx broke inside '{failed_in}' "
            f"({type(module).__name__}: {reason}); keep it whole with --leaf {failed_in} "
            f"(no cut inside it), or make its forward traceable"
        )
    return (
        f"cannot trace {type(model).__name__}: torch.fx broke in its own forward ({reason}); "
        f"make the forward traceable (no control flow on tensor values), or build the model as an "
        f"nn.Sequential of blocks so that it can be cut between them"
    )


class _NodeCall(nn.Module):
    """One operation of a graph as a module of its own, so that fvcore attributes MACs to it."""

    def __init__(self, node: fx.Node, owner: nn.Module) -> None:
        super().__init__()
        self.op, self.target = node.op, node.target
        self.inner = owner.get_submodule(node.target) if node.op == "call_module" else None
        self.inputs: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), self.inputs.append)
        self.args, self.kwargs = node.args, node.kwargs

    def forward(self, *values: Any) -> Any:
        lookup = dict(zip(self.inputs, values))
        args, kwargs = fx.node.map_arg((self.args, self.kwargs), lookup.__getitem__)
        if self.op == "call_module":
            return self.inner(*args, **kwargs)
        if self.op == "call_function":
            return self.target(*args, **kwargs)
        receiver, *rest = args
        return getattr(receiver, self.target)(*rest, **kwargs)


def _measure_nodes(gm: fx.GraphModule, example: torch.Tensor) -> tuple[dict[fx.Node, int], dict[fx.Node, Any]]:
    """fvcore MACs and output value (shape or None) of every compute node, from one traced run."""
    graph, calls, env = fx.Graph(), {}, {}
    attributes: dict[str, Any] = {}
    for index, node in enumerate(gm.graph.nodes):
        if node.op in COMPUTE_OPS:
            name = f"node{index}"
            calls[name] = (node, _NodeCall(node, gm))
            env[node] = graph.call_module(name, tuple(env[n] for n in calls[name][1].inputs))
        else:
            if node.op == "get_attr":
                attributes[node.target] = _get_attr(gm, node.target)
            env[node] = graph.node_copy(node, env.__getitem__)
    root = {name: call for name, (_, call) in calls.items()} | attributes
    counting = fx.GraphModule(root, graph)

    outputs: dict[fx.Node, Any] = {}

    def record(node: fx.Node) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            outputs[node] = tuple(int(s) for s in output.shape[1:]) if isinstance(output, torch.Tensor) else None

        return hook

    hooks = [call.register_forward_hook(record(node)) for node, call in calls.values()]
    try:
        by_module = count_macs(counting, example).by_module()
    finally:
        for hook in hooks:
            hook.remove()
    macs = {node: int(by_module.get(name, 0)) for name, (node, _) in calls.items()}
    return macs, outputs


def _get_attr(module: nn.Module, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f".{node.target}"
    return getattr(node.target, "__name__", str(node.target))


class CutGraph:
    """A traced model with every valid cut, its MACs, parameters and shapes.

    Build it with :meth:`trace`; ``cuts`` lists the valid split points in execution order,
    ``nodes`` every operation. :meth:`split` returns head and tail as real modules (fx
    ``GraphModule`` s sharing the model's parameters) with ``tail(head(x)) == model(x)``.
    """

    def __init__(self, gm: fx.GraphModule, scope_of: dict[fx.Node, str], example: torch.Tensor,
                 aliases: dict[str, str] | None = None, reused: set[str] = frozenset()) -> None:
        self.module = gm
        self.input_shape = tuple(int(s) for s in example.shape[1:])
        self._order = list(gm.graph.nodes)
        self._index = {node: i for i, node in enumerate(self._order)}
        macs, outputs = _measure_nodes(gm, example)
        self._qualname = self._qualnames(scope_of)
        self._reused = set(reused)
        self.nodes, self.cuts = self._enumerate(gm, scope_of, macs, outputs)
        self._by_name: dict[str, Cut] = {}
        for cut in self.cuts:
            for name in cut.names():
                self._by_name.setdefault(name, cut)
        for paper_name, target in (aliases or {}).items():
            self._add_alias(paper_name, target)

    @classmethod
    def trace(cls, model: nn.Module, example: torch.Tensor, *, leaf_modules: Iterable[str] = (),
              aliases: dict[str, str] | None = None) -> CutGraph:
        """Trace ``model`` and measure it on ``example`` (a batch of one input).

        ``aliases`` maps extra names (the papers' layer names) to cut names or module paths.
        """
        gm, scope_of, reused = trace_graph(model, leaf_modules)
        # Measured with autograd on, as fvcore counts a whole model: under no_grad,
        # nn.MultiheadAttention takes a fused fast path that fvcore cannot see into.
        try:
            return cls(gm, scope_of, example, aliases, reused)
        except (RuntimeError, ValueError, IndexError, AssertionError, TypeError) as error:  # shapes that do not fit
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            shape = "x".join(map(str, example.shape[1:]))
            raise SplitbenchError(f"{type(model).__name__} cannot run on a {shape} input: {reason}") from None

    # --- enumeration ---------------------------------------------------------------------

    def _qualnames(self, scope_of: dict[fx.Node, str]) -> dict[fx.Node, str]:
        """torchvision-style qualified names: the module path, or scope + op name."""
        names: dict[fx.Node, str] = {}
        seen: dict[str, int] = {}
        for node in self._order:
            if node.op == "call_module":
                base = str(node.target)
            elif node.op in ("call_function", "call_method"):
                scope = scope_of.get(node, "")
                op = getattr(node.target, "__name__", str(node.target)).lstrip("_")
                base = f"{scope}.{op}" if scope else op
            else:
                continue
            count = seen.get(base, 0)
            seen[base] = count + 1
            names[node] = base if count == 0 else f"{base}_{count}"
        return names

    def _enumerate(self, gm: fx.GraphModule, scope_of: dict[fx.Node, str], macs: dict[fx.Node, int],
                   outputs: dict[fx.Node, Any]) -> tuple[list[NodeInfo], list[Cut]]:
        order = self._order
        last_use = {node: max((self._index[u] for u in node.users), default=-1) for node in order}
        ends = self._scope_ends(scope_of)
        params_of = self._first_use_params(gm)

        nodes: list[NodeInfo] = []
        cuts: list[Cut] = []
        live: dict[fx.Node, None] = {}  # insertion-ordered set
        cum_macs = cum_params = since_macs = since_params = 0
        crossing_seen: set[fx.Node] = set()
        for position, node in enumerate(order):
            if node.op == "output":
                break
            if node.op != "get_attr" and last_use[node] > position:
                live[node] = None
            for value in [v for v in live if last_use[v] <= position]:
                del live[value]
            if node.op not in COMPUTE_OPS:
                continue
            node_macs, node_params = macs.get(node, 0), params_of.get(node, 0)
            cum_macs, cum_params = cum_macs + node_macs, cum_params + node_params
            since_macs, since_params = since_macs + node_macs, since_params + node_params
            crossing = list(live)
            cut_name = None
            single = crossing[0] if len(crossing) == 1 else None
            if single is not None and single.op in COMPUTE_OPS and outputs.get(single) is not None \
                    and single not in crossing_seen:
                crossing_seen.add(single)
                names = self._cut_names(single, ends)
                cut_name = names[0]
                cuts.append(Cut(cut_name, tuple(names[1:]), position, outputs[single], since_macs, cum_macs,
                                since_params, cum_params, _kind(gm, single), self._qualname[single]))
                since_macs = since_params = 0
            nodes.append(NodeInfo(self._qualname[node], node.op, _kind(gm, node), outputs.get(node), node_macs,
                                  node_params, tuple(self._describe(v) for v in crossing), cut_name))
        return nodes, cuts

    def _scope_ends(self, scope_of: dict[fx.Node, str]) -> dict[fx.Node, list[str]]:
        """For each node, the module paths whose last operation it is, shallowest first."""
        last: dict[str, fx.Node] = {}
        for node in self._order:
            if node.op not in COMPUTE_OPS:
                continue
            scope = str(node.target) if node.op == "call_module" else scope_of.get(node, "")
            parts = scope.split(".") if scope else []
            for depth in range(1, len(parts) + 1):
                last[".".join(parts[:depth])] = node
        ends: dict[fx.Node, list[str]] = {}
        for path, node in last.items():
            if path not in self._reused:  # a module called twice has no single output to name a cut by
                ends.setdefault(node, []).append(path)
        for paths in ends.values():
            paths.sort(key=lambda p: p.count("."))
        return ends

    def _cut_names(self, node: fx.Node, ends: dict[fx.Node, list[str]]) -> list[str]:
        names = list(ends.get(node, []))
        if self._qualname[node] not in names:
            names.append(self._qualname[node])
        return names

    def _first_use_params(self, gm: fx.GraphModule) -> dict[fx.Node, int]:
        """Parameter elements attributed to the node that first uses them (shared ones once)."""
        seen: set[int] = set()
        counts: dict[fx.Node, int] = {}
        for node in self._order:
            if node.op == "call_module":
                tensors = list(gm.get_submodule(node.target).parameters())
            elif node.op == "get_attr":
                value = _get_attr(gm, node.target)
                tensors = list(value.parameters()) if isinstance(value, nn.Module) else \
                    [value] if isinstance(value, nn.Parameter) else []
            else:
                continue
            fresh = [t for t in tensors if id(t) not in seen]
            seen.update(id(t) for t in fresh)
            # A get_attr's parameters count where the value is first used, i.e. at its user.
            owner = min(node.users, key=self._index.__getitem__) if node.op == "get_attr" and node.users else node
            counts[owner] = counts.get(owner, 0) + sum(t.numel() for t in fresh)
        return counts

    def _describe(self, node: fx.Node) -> str:
        return "input" if node.op == "placeholder" else self._qualname.get(node, node.name)

    def _add_alias(self, alias: str, target: str) -> None:
        cut = self._by_name.get(target)
        if cut is None:
            raise SplitbenchError(f"split point name '{alias}' points at '{target}', which is not a valid cut")
        if alias in cut.names():
            return
        shadowed = self._by_name.get(alias)
        if shadowed is not None and shadowed.name == alias:
            # A paper's name wins over a cut's own (ResNet's "conv1" includes its BN and
            # ReLU); the cut it hid is renamed so that every listed name still resolves.
            self._replace(shadowed, name=f"{alias}.output")
        self._replace(cut, aliases=(*cut.aliases, alias))

    def _replace(self, cut: Cut, **changes: Any) -> None:
        replaced = Cut(**{**cut.__dict__, **changes})
        self.cuts[self.cuts.index(cut)] = replaced
        for name in (*cut.names(), *replaced.names()):
            if self._by_name.get(name) is cut:
                del self._by_name[name]
        for name in replaced.names():
            self._by_name[name] = replaced
        self.nodes = [NodeInfo(**{**n.__dict__, "cut": replaced.name}) if n.cut == cut.name else n for n in self.nodes]

    # --- lookup and splitting --------------------------------------------------------------

    def paper_name(self, cut: Cut, paper_names: Iterable[str]) -> str | None:
        """The first of ``paper_names`` that is an alias of ``cut``."""
        return next((name for name in paper_names if name in cut.names()), None)

    def resolve(self, at: str) -> Cut:
        """The cut named ``at`` (cut name, module path ending there, or alias)."""
        if at in self._by_name:
            return self._by_name[at]
        raise SplitbenchError(self._not_a_cut_message(at))

    def _not_a_cut_message(self, at: str) -> str:
        info = next((n for n in self.nodes if n.name == at), None)
        if info is None:  # a module path whose last operation is not a cut
            info = next((n for n in reversed(self.nodes) if n.name.startswith(at + ".")), None)
        if info is not None:
            if info.shape is None and len(info.crossing) <= 1:
                return f"cannot split at '{at}': what crosses there is not a tensor"
            first = info.name if info.name in info.crossing else info.crossing[0]
            second = next((c for c in info.crossing if c != first), "?")
            return (
                f"cannot split at '{at}': {len(info.crossing)} values cross there "
                f"({first} and {second}); "
                f"a split sends exactly one tensor — try {self._nearest_cut(info.name)}"
            )
        valid = [c.name for c in self.cuts]
        close = difflib.get_close_matches(at, list(self._by_name), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"unknown split point '{at}'{hint} {len(valid)} valid cuts: {_abbreviate(valid)} "
            f"(`splitbench profile` lists them)"
        )

    def _nearest_cut(self, name: str) -> str:
        index = next(i for i, n in enumerate(self.nodes) if n.name == name)
        after = next((n.cut for n in self.nodes[index:] if n.cut), None)
        before = next((n.cut for n in reversed(self.nodes[:index]) if n.cut), None)
        return " or ".join(f"'{c}'" for c in (before, after) if c)

    def split(self, cut: Cut | str) -> tuple[fx.GraphModule, fx.GraphModule]:
        """Head (input → transmitted tensor) and tail (tensor → output) as modules."""
        cut = self.resolve(cut) if isinstance(cut, str) else cut
        order, gm = self._order, self.module
        crossing = self._crossing_node(cut)

        head, env = fx.Graph(), {}
        for node in order[: cut.position + 1]:
            env[node] = head.node_copy(node, env.__getitem__)
        head.output(env[crossing])

        tail, env = fx.Graph(), {}
        env[crossing] = tail.placeholder("features")
        for node in order[: cut.position + 1]:  # parameters the tail reads itself
            if node.op == "get_attr" and any(self._index[u] > cut.position for u in node.users):
                env[node] = tail.node_copy(node)
        for node in order[cut.position + 1 :]:
            env[node] = tail.node_copy(node, env.__getitem__)
        return fx.GraphModule(gm, head, "Head"), fx.GraphModule(gm, tail, "Tail")

    def _crossing_node(self, cut: Cut) -> fx.Node:
        return next(n for n, name in self._qualname.items() if name == cut.node)

    def head(self, cut: Cut | str) -> fx.GraphModule:
        return self.split(cut)[0]

    def tail(self, cut: Cut | str) -> fx.GraphModule:
        return self.split(cut)[1]

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.nodes)


def _abbreviate(names: Sequence[str], keep: int = 12) -> str:
    if len(names) <= keep:
        return ", ".join(names)
    half = keep // 2
    return ", ".join([*names[:half], "…", *names[-half:]])
