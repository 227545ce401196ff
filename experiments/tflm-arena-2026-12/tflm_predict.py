"""Predict TFLite Micro's tensor-arena head (planned activation memory) from a .tflite flatbuffer.

A Python port of the rules in tflite-micro (source read at commit 90b983c2, 2026-08-20):

* micro_allocation_info.cc (AllocationInfoBuilder): which tensors are planned and their lifetimes;
* micro_allocator.cc (CreatePlan / CommitStaticMemoryPlan): sizes aligned up to
  MicroArenaBufferAlignment() == 16, head = GreedyMemoryPlanner::GetMaximumMemorySize();
* memory_planner/greedy_memory_planner.cc: the greedy first-fit-by-offset placement;
* kernels/*.cc: scratch buffers that the *reference* kernels request in Prepare (the PyPI
  `tflite-micro` wheel uses the reference kernels, not CMSIS-NN / Xtensa).

Only the flatbuffer is needed (TensorFlow's own `schema_py_generated`), no TFLM runtime.
"""

try:  # the LiteRT wheel ships the same generated schema without importing TensorFlow
    from ai_edge_litert import schema_py_generated as fb
except ImportError:
    from tensorflow.lite.python import schema_py_generated as fb

ALIGN = 16  # MicroArenaBufferAlignment()
ONLINE = -1  # kOnlinePlannedBuffer

_DTYPE_BYTES = {
    fb.TensorType.FLOAT32: 4,
    fb.TensorType.FLOAT16: 2,
    fb.TensorType.INT32: 4,
    fb.TensorType.UINT8: 1,
    fb.TensorType.INT64: 8,
    fb.TensorType.BOOL: 1,
    fb.TensorType.INT16: 2,
    fb.TensorType.INT8: 1,
    fb.TensorType.FLOAT64: 8,
    fb.TensorType.UINT64: 8,
    fb.TensorType.UINT32: 4,
    fb.TensorType.UINT16: 2,
}
_OPNAME = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def align_up(n, a=ALIGN):
    return (n + a - 1) // a * a


def load(model_bytes):
    return fb.ModelT.InitFromObj(fb.Model.GetRootAs(model_bytes, 0))


def op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    return _OPNAME.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def tensor_bytes(t):
    n = 1
    for d in t.shape if t.shape is not None else []:
        n *= int(d)
    return n * _DTYPE_BYTES[t.type]


def scratch_requests(model, sg):
    """(op index, bytes) of every RequestScratchBufferInArena of the reference kernels, in Prepare order.

    Only the kernels our models use are modelled; int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
    request a scratch buffer only for int4 filters (conv_common.cc, depthwise_conv_common.cc,
    fully_connected.cc), ADD / CONCATENATION / MAX_POOL_2D / RESHAPE / PAD none.
    MEAN and SUM (reduce_common.cc, PrepareMeanOrSumHelper), int8/int16 input:
      4 * NumElements(output)   (scratch_accumulator_idx, only for int8/int16)
      4 * input rank            (scratch_input_iter_idx)
      4 * NumElements(axis)     (scratch_resolved_axis_idx)
    """
    out = []
    for i, op in enumerate(sg.operators):
        name = op_name(model, op)
        if name in ("MEAN", "SUM"):
            inp, axis, outp = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
            if inp.type in (fb.TensorType.INT8, fb.TensorType.INT16):
                out.append((i, 4 * (tensor_bytes(outp) // _DTYPE_BYTES[outp.type])))
            out.append((i, 4 * len(inp.shape)))
            out.append((i, 4 * (tensor_bytes(axis) // _DTYPE_BYTES[axis.type])))
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = sg.tensors[op.inputs[1]]
            if w.type == fb.TensorType.INT4:
                out.append((i, tensor_bytes_elems(w)))
    return out


def tensor_bytes_elems(t):
    n = 1
    for d in t.shape:
        n *= int(d)
    return n


def allocation_info(model, include_scratch=True):
    """The planner's buffers in AddBuffer order: dicts with size (aligned), first, last, what."""
    if len(model.subgraphs) != 1:
        raise NotImplementedError("control-flow subgraphs are not modelled")
    if any((m.name or b"").decode() == "OfflineMemoryAllocation" for m in (model.metadata or [])):
        raise NotImplementedError("offline-planned models are not modelled")
    sg = model.subgraphs[0]
    n = len(sg.tensors)
    first = [-1] * n
    last = [-1] * n
    scope = 0
    for t in sg.inputs:  # graph inputs: created and used at scope 0
        first[t] = 0 if first[t] == -1 else first[t]
        last[t] = 0
    scratch = scratch_requests(model, sg) if include_scratch else []
    scratch_life = []
    for i, op in enumerate(sg.operators):
        scope += 1  # every operator opens a new allocation scope
        for t in op.outputs:
            if first[t] == -1:
                first[t] = scope
        for t in op.inputs:
            if t >= 0:
                last[t] = scope
        for t in op.outputs:
            last[t] = scope
        for j, nbytes in scratch:
            if j == i:
                scratch_life.append((nbytes, scope, scope, f"scratch op{i}"))
    for t in sg.outputs:  # graph outputs live to the end of the subgraph
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    buffers = []
    for i, t in enumerate(sg.tensors):
        buf = model.buffers[t.buffer] if t.buffer is not None else None
        has_data = buf is not None and ((buf.data is not None and len(buf.data) > 0) or buf.size > 0)
        nbytes = tensor_bytes(t)
        if not has_data and not t.isVariable and nbytes != 0:  # needs_allocating
            name = t.name.decode() if isinstance(t.name, bytes) else t.name
            buffers.append(dict(size=align_up(nbytes), first=first[i], last=last[i], what=f"t{i} {name}"))
    for nbytes, first_step, last_step, what in scratch_life:
        buffers.append(dict(size=align_up(nbytes), first=first_step, last=last_step, what=what))
    return buffers


def greedy_plan(buffers):
    """GreedyMemoryPlanner::CalculateOffsetsIfNeeded, online buffers only. Returns (offsets, head)."""
    count = len(buffers)
    if count == 0:
        return [], 0
    # Online buffers are written from the tail of the sort arrays (so in reverse id order), then
    # bubble-sorted by size descending with a swap only on strict '<': ties stay in reverse id order.
    ids = list(range(count))[::-1]
    sizes = [buffers[i]["size"] for i in ids]
    swapped = True
    while swapped:
        swapped = False
        for i in range(1, count):
            if sizes[i - 1] < sizes[i]:
                sizes[i - 1], sizes[i] = sizes[i], sizes[i - 1]
                ids[i - 1], ids[i] = ids[i], ids[i - 1]
                swapped = True
    offsets = [None] * count
    placed = []  # (offset, id), kept sorted by offset; equal offsets: new entry after existing ones

    def overlaps(j, first_step, last_step):
        return not (buffers[j]["first"] > last_step or first_step > buffers[j]["last"])

    offsets[ids[0]] = 0
    placed.append((0, ids[0]))
    for bid in ids[1:]:
        want, first_step, last_step = buffers[bid]["size"], buffers[bid]["first"], buffers[bid]["last"]
        candidate = 0
        active = [(o, j) for (o, j) in placed if overlaps(j, first_step, last_step)]  # in offset order
        prior = None
        k = 0
        while True:
            nxt = active[k] if k < len(active) else None
            if prior is not None:
                end = prior[0] + buffers[prior[1]]["size"]
                candidate = max(candidate, end)
            if nxt is None:
                break
            if nxt[0] - candidate >= want:
                break
            prior = nxt
            k += 1
        offsets[bid] = candidate
        # insertion: before the first entry whose offset is > candidate (first entry replaced if >)
        pos = len(placed)
        for p, (o, _) in enumerate(placed):
            if o > candidate:
                pos = p
                break
        placed.insert(pos, (candidate, bid))
    head = max(offsets[i] + buffers[i]["size"] for i in range(count))
    return offsets, head


def live_lower_bound(buffers):
    """max over scopes of the sum of live (aligned) buffers: no planner can do better."""
    if not buffers:
        return 0
    t_max = max(b["last"] for b in buffers)
    return max(sum(b["size"] for b in buffers if b["first"] <= t <= b["last"]) for t in range(-1, t_max + 1))


def predict_head(model_bytes, include_scratch=True):
    model = load(model_bytes)
    buffers = allocation_info(model, include_scratch)
    _, head = greedy_plan(buffers)
    return dict(head=head, lower_bound=live_lower_bound(buffers), n_buffers=len(buffers), buffers=buffers)


def flash_parts(model_bytes):
    """Weight bytes (constant buffers) and quantization-parameter bytes of a .tflite file."""
    model = load(model_bytes)
    weights = sum(len(b.data) for b in model.buffers if b.data is not None)
    quant = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is None:
                continue
            for arr, width in ((q.scale, 4), (q.zeroPoint, 8), (q.min, 4), (q.max, 4)):
                if arr is not None:
                    quant += width * len(arr)
    n_tensors = sum(len(sg.tensors) for sg in model.subgraphs)
    n_ops = sum(len(sg.operators) for sg in model.subgraphs)
    return dict(weights=weights, quant=quant, n_tensors=n_tensors, n_ops=n_ops, n_buffers=len(model.buffers))


def tail_width_term(model_bytes):
    """The width-dependent part of the tail (persistent section).

    CONV_2D and DEPTHWISE_CONV_2D Prepare allocate two persistent int32 arrays of the filter's
    output channels (per_channel_output_multiplier / _shift; conv_common.cc,
    depthwise_conv_common.cc); FULLY_CONNECTED does so only for per-channel quantized filters
    (fully_connected_common.cc). AllocatePersistentBuffer aligns each to 16 bytes. Everything
    else in the tail (TfLiteEvalTensor array, NodeAndRegistration structs, OpData structs,
    allocator objects) depends on the graph's structure, not on its channel widths.
    """
    model = load(model_bytes)
    sg = model.subgraphs[0]
    term = 0
    for op in sg.operators:
        name = op_name(model, op)
        w = sg.tensors[op.inputs[1]] if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else None
        if name == "CONV_2D":
            n = int(w.shape[0])
        elif name == "DEPTHWISE_CONV_2D":
            n = int(w.shape[3])
        elif (
            name == "FULLY_CONNECTED"
            and w.quantization is not None
            and w.quantization.scale is not None
            and len(w.quantization.scale) > 1
        ):
            n = len(w.quantization.scale)
        else:
            continue
        term += 2 * align_up(4 * n)
    return term
