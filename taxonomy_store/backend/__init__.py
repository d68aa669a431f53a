"""The backend: what every part stands on, and nothing of the domain.

- `database.py`: sessions, one-transaction writes with their audit batch, the data revision;
- `dirs.py`: the store directory's layout (Chroma data, caches);
- `vector_index.py`: Chroma collections, one per encoder registration;
- `writer_lock.py`: one writer at a time on the embedded Chroma (readers never wait);
- `model_refs.py`: the table of model references (`pkg:`, `cache:`, `hashing:`, paths): what a
  registration records and which encoder runs it;
- `encoding.py` + `model_folders.py` + `encoder_info.py` + `hashing_encoder.py`: running a
  registered encoder (sentence-transformers offline, or the deterministic test encoder),
  finding and fingerprinting its weights.

Parts receive these in their constructors from the composition root (`store.py`); nothing here
imports a part.
"""
