"""Work sharded over a Ray cluster (`--ray ADDRESS`): encoding for `embed`, exact top-k for metrics.

Optional: `pip install 'taxonomy-store[ray]'`. `ray` is imported inside functions only, so the
package imports (and the rest of tstore runs) without it. The store (`store.py`) hands these
pieces to the parts it builds: `Embeddings` gets `RayBatchEncoder` as its "encode these batches"
function, `GraphCache` gets `RayTopK` as its self-kNN function. The calling process stays the
one writer: workers only compute and send results back.
"""
