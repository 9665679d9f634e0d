"""Pure transparency-log core: RFC 9162 Merkle trees, C2SP notes/checkpoints/tiles/proofs,
canonical custody events and export bundles.  Standard library + ``cryptography`` only.

Public API (stable; other services build on it; details in ``services/tlog/README.md``):

``merkle``      ``leaf_hash``, ``node_hash``, ``root_hash`` (naive MTH), ``verify_inclusion``,
                ``verify_consistency`` (RFC 9162, raise ``ProofError``), ``inclusion_proof``,
                ``consistency_proof`` (built from a ``HashReader`` of complete-subtree
                ``NodeId = (level, index)`` hashes, one batch call), ``EMPTY_ROOT``.
``compact``     ``CompactRange``: O(log n) frontier; ``append``/``extend``/``root``/``to_bytes``.
``tiles``       ``TileId`` (C2SP path format/parse), ``Tile``, ``TileBuilder`` (incremental,
                resumable from partial tiles), ``tile_hash_reader`` (tiles -> ``HashReader``).
``note``        ``Signer``, ``Verifier``, ``generate_key``, ``sign``, ``open_note`` -> ``Note``.
``checkpoint``  ``Checkpoint(origin, size, root_hash, extensions)`` with ``to_text``/``parse``/``sign``.
``proof``       ``TlogProof`` (c2sp.org/tlog-proof@v1), ``format_consistency_proof``,
                ``parse_consistency_proof``.
``jcs``         ``canonicalize`` (RFC 8785), ``parse_json`` (strict).
``events``      ``build_event`` -> ``Event``, ``parse_event``, ``event_hash``, ``GENESIS_PREV_HASH``,
                ``check_payload``, ``ChainVerifier``, ``verify_chain`` -> ``ChainResult``.
``verify``      ``verify_checkpoint``, ``verify_entry_proof``, ``verify_checkpoint_consistency``,
                ``verify_since_checkpoint`` (shared by VerifyLedger and ``lz-verify``).
``bundle``      ``write_bundle``, ``verify_bundle`` -> ``BundleReport``.
``errors``      ``TlogError`` > ``MalformedError`` (``NoteError``, ``TileError``, ``PayloadError``)
                and ``VerificationError`` (``ProofError``, ``ChainError``).
``cli``         ``main`` behind the ``lz-verify`` console script.

Why one package: every rule about bytes (hashing, canonical JSON, note and tile
formats) lives here once, so the sealer that writes, the ledger that serves
and the auditor's offline verifier cannot drift apart.
"""

from services.tlog.bundle import BundleReport, verify_bundle, write_bundle
from services.tlog.checkpoint import Checkpoint
from services.tlog.compact import CompactRange
from services.tlog.errors import (
    ChainError,
    MalformedError,
    NoteError,
    PayloadError,
    ProofError,
    TileError,
    TlogError,
    VerificationError,
)
from services.tlog.events import (
    GENESIS_PREV_HASH,
    ChainResult,
    ChainVerifier,
    Event,
    build_event,
    check_payload,
    event_hash,
    parse_event,
    verify_chain,
)
from services.tlog.merkle import (
    EMPTY_ROOT,
    HashReader,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from services.tlog.note import Note, Signer, Verifier, generate_key, open_note, sign
from services.tlog.proof import TlogProof, format_consistency_proof, parse_consistency_proof
from services.tlog.tiles import Tile, TileBuilder, TileId, tile_hash_reader
from services.tlog.verify import (
    verify_checkpoint,
    verify_checkpoint_consistency,
    verify_entry_proof,
    verify_since_checkpoint,
)

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_PREV_HASH",
    "BundleReport",
    "ChainError",
    "ChainResult",
    "ChainVerifier",
    "Checkpoint",
    "CompactRange",
    "Event",
    "HashReader",
    "MalformedError",
    "NodeId",
    "Note",
    "NoteError",
    "PayloadError",
    "ProofError",
    "Signer",
    "Tile",
    "TileBuilder",
    "TileError",
    "TileId",
    "TlogError",
    "TlogProof",
    "VerificationError",
    "Verifier",
    "build_event",
    "check_payload",
    "consistency_proof",
    "event_hash",
    "format_consistency_proof",
    "generate_key",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "open_note",
    "parse_consistency_proof",
    "parse_event",
    "root_hash",
    "sign",
    "tile_hash_reader",
    "verify_bundle",
    "verify_chain",
    "verify_checkpoint",
    "verify_checkpoint_consistency",
    "verify_consistency",
    "verify_entry_proof",
    "verify_inclusion",
    "verify_since_checkpoint",
    "write_bundle",
]
