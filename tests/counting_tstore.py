"""`tstore` with every encoder call counted: each call appends "PID N" (N texts) to the file
named by $TSTORE_TEST_ENCODE_LOG. Used by tests that run several tstore processes at once and
check that no text is encoded twice (the counting is here, not in tstore)."""

import os
import sys

import taxonomy_store.backend.encoding as encoding

_real = encoding.encode


def _counted(model, texts, batch_size=64):
    out = _real(model, texts, batch_size)
    if texts:
        with open(os.environ["TSTORE_TEST_ENCODE_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {len(texts)}\n")
    return out


encoding.encode = _counted

if __name__ == "__main__":
    from taxonomy_store.cli import main

    sys.argv[0] = "tstore"
    sys.exit(main())
