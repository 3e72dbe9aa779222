"""Template protection: stored face embeddings encrypted (AES-GCM), and revocable random-projection templates.

*Encryption at rest.* :class:`TemplateCipher` encrypts an embedding with AES-256-GCM, an
authenticated cipher (``cryptography``'s ``AESGCM``): a fresh 96-bit nonce per template, and the
person's id as *associated data*, so a ciphertext moved to another person's record, or any flipped
bit in nonce, ciphertext or tag, fails to decrypt with :class:`TemplateIntegrityError`. Matching
still needs the plaintext: encryption protects the database, not the comparison.

*Revocable templates* (BioHashing-like, Teoh et al. 2004; sign random projections, Charikar 2002).
:class:`RandomProjection` maps an embedding ``e`` (D,) to bits ``sign(W e)`` (m,) with a Gaussian
``W`` (m, D) drawn from a secret seed. For unit vectors the expected fraction of differing bits is
``angle(e1, e2) / pi``, so matching works on bits; a leaked template is revoked by issuing a new
seed, and templates of one person under two seeds are unrelated (unlinkable).

>>> import numpy as np
>>> cipher = TemplateCipher(TemplateCipher.generate_key())
>>> e = np.arange(4, dtype=np.float32)
>>> bool((cipher.decrypt(cipher.encrypt(e, "alice"), "alice") == e).all())
True
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from facekit.config import ConfigError

NONCE_BYTES = 12  # AES-GCM's standard 96-bit nonce
KEY_BITS = 256
FORMAT_TAG = b"facekit-template-v1"  # bound into the associated data: a different format cannot be replayed


class TemplateIntegrityError(ValueError):
    """A template failed authentication: tampered with, wrong key, or attached to the wrong person."""


@dataclass(frozen=True)
class EncryptedTemplate:
    nonce: bytes  # 12 random bytes, unique per encryption
    ciphertext: bytes  # encrypted float32 embedding followed by the 16-byte GCM tag
    dim: int  # embedding length D (authenticated too)

    def to_bytes(self) -> bytes:
        """nonce || dim (4 bytes, big-endian) || ciphertext: what a database would store."""
        return self.nonce + struct.pack(">I", self.dim) + self.ciphertext

    @classmethod
    def from_bytes(cls, blob: bytes) -> "EncryptedTemplate":
        if len(blob) < NONCE_BYTES + 4 + 16:
            raise TemplateIntegrityError(f"a stored template is at least {NONCE_BYTES + 20} bytes, got {len(blob)}")
        (dim,) = struct.unpack(">I", blob[NONCE_BYTES:NONCE_BYTES + 4])
        return cls(blob[:NONCE_BYTES], blob[NONCE_BYTES + 4:], dim)


class TemplateCipher:
    """AES-256-GCM encryption of embeddings, bound to the person id (associated data).

    Args:
        key: 32 random bytes (:meth:`generate_key`); keep it in a key store, not beside the database.
    """

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BITS // 8:
            raise ConfigError(f"key must be {KEY_BITS // 8} bytes (AES-{KEY_BITS}); use TemplateCipher.generate_key()")
        self._aead = AESGCM(bytes(key))

    @staticmethod
    def generate_key() -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM.generate_key(bit_length=KEY_BITS)

    @staticmethod
    def _associated(person_id: str, dim: int) -> bytes:
        if not isinstance(person_id, str) or not person_id:
            raise ConfigError(f"person_id must be a non-empty string, got {person_id!r}")
        return FORMAT_TAG + b"|" + str(dim).encode() + b"|" + person_id.encode("utf-8")

    def encrypt(self, embedding, person_id: str, *, nonce: bytes | None = None) -> EncryptedTemplate:
        """Encrypt a (D,) embedding (stored as float32) for ``person_id``; a random nonce unless given (tests)."""
        e = np.asarray(embedding, dtype=np.float32)
        if e.ndim != 1:
            raise ConfigError(f"embedding must be one (D,) vector, got shape {e.shape}")
        nonce = os.urandom(NONCE_BYTES) if nonce is None else bytes(nonce)
        if len(nonce) != NONCE_BYTES:
            raise ConfigError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
        ct = self._aead.encrypt(nonce, e.astype("<f4").tobytes(), self._associated(person_id, e.size))
        return EncryptedTemplate(nonce, ct, int(e.size))

    def decrypt(self, template: EncryptedTemplate, person_id: str) -> np.ndarray:
        """The (D,) float32 embedding; TemplateIntegrityError if anything was altered or the id is wrong."""
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._aead.decrypt(template.nonce, template.ciphertext, self._associated(person_id, template.dim))
        except InvalidTag as err:
            raise TemplateIntegrityError(
                f"template for {person_id!r} failed authentication: it was altered, encrypted with another key, "
                "or belongs to another person") from err
        return np.frombuffer(plain, dtype="<f4").copy()


class RandomProjection:
    """A revocable binary template ``sign(W e)``, ``W`` (m, D) standard Gaussian drawn from ``seed``.

    Args:
        dim_in: D, the embedding width. dim_out: m, the number of bits.
        seed: the secret that makes the template; a new seed re-issues it.

    >>> p = RandomProjection(8, 16, seed=1)
    >>> p.protect(np.ones((2, 8))).shape
    (2, 16)
    """

    def __init__(self, dim_in: int, dim_out: int, seed: int):
        if dim_in < 1 or dim_out < 1:
            raise ConfigError(f"dim_in={dim_in} and dim_out={dim_out} must be >= 1")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self.matrix = np.random.default_rng([self.seed, 0xB10]).standard_normal((self.dim_out, self.dim_in))

    def protect(self, embeddings) -> np.ndarray:
        """(N, D) or (D,) embeddings -> (N, m) or (m,) bool bits."""
        e = np.asarray(embeddings, dtype=np.float64)
        if e.shape[-1] != self.dim_in:
            raise ConfigError(f"embeddings have width {e.shape[-1]}, this projection expects {self.dim_in}")
        return (e @ self.matrix.T) > 0

    def reissue(self, new_seed: int) -> "RandomProjection":
        """The same construction under a new secret seed (after a leak)."""
        if int(new_seed) == self.seed:
            raise ConfigError("re-issuing needs a seed different from the current one")
        return RandomProjection(self.dim_in, self.dim_out, new_seed)


def hamming_similarity(bits_a, bits_b) -> np.ndarray:
    """1 - (fraction of differing bits), row by row: (N, m), (N, m) -> (N,); 1 = identical, ~0.5 = unrelated."""
    a, b = np.asarray(bits_a, dtype=bool), np.asarray(bits_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"bit arrays must have the same shape, got {a.shape} and {b.shape}")
    return 1.0 - (a != b).mean(axis=-1)


__all__ = ["TemplateCipher", "EncryptedTemplate", "TemplateIntegrityError", "RandomProjection", "hamming_similarity",
           "NONCE_BYTES", "KEY_BITS"]
