# The chat-seal.json vector, computed without our code: python3 chat-seal.py ed25519:7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E
import hashlib, struct, base64
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

p = 2**255 - 19
def ed_pub(seed):
    k = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
def to_mont(pub):
    y = int.from_bytes(pub, 'little') & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, p - 2, p) % p
    return u.to_bytes(32, 'little')
def x_secret(seed):
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    return bytes(h)  # X25519 clamps itself


def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
def qr(s, a, b, c, d):
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],16)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],12)
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],8)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],7)
def hchacha(key, nonce16):
    s = [0x61707865,0x3320646e,0x79622d32,0x6b206574] + list(struct.unpack('<8I', key)) + list(struct.unpack('<4I', nonce16))
    for _ in range(10):
        qr(s,0,4,8,12); qr(s,1,5,9,13); qr(s,2,6,10,14); qr(s,3,7,11,15)
        qr(s,0,5,10,15); qr(s,1,6,11,12); qr(s,2,7,8,13); qr(s,3,4,9,14)
    return struct.pack('<8I', *(s[0:4] + s[12:16]))
def xchacha_encrypt(key, nonce24, msg, aad):
    sub = hchacha(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b'\0\0\0\0' + nonce24[16:], msg, aad)

import sys  # argv[1]: the community id (full form)
a_seed, b_seed, c_seed = bytes([1]*32), bytes([2]*32), bytes([3]*32)
a_pub, b_pub, c_pub = ed_pub(a_seed), ed_pub(b_seed), ed_pub(c_seed)
community_full = sys.argv[1]
shared = x25519.X25519PrivateKey.from_private_bytes(x_secret(a_seed)).exchange(x25519.X25519PublicKey.from_public_bytes(to_mont(b_pub)))
shared2 = x25519.X25519PrivateKey.from_private_bytes(x_secret(b_seed)).exchange(x25519.X25519PublicKey.from_public_bytes(to_mont(a_pub)))
assert shared == shared2
lo, hi = sorted([a_pub, b_pub])
info = b"hearthnet/chat/direct-message/v1" + community_full.encode() + lo + hi
key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
def lp(b): return struct.pack('>I', len(b)) + b
aad = lp(b"hearthnet/chat/direct-message/v1") + lp(community_full.encode()) + lp(a_pub) + lp(b_pub) + lp(b"01HXR0000000000000000000AB")
nonce = bytes([7]*24)
ct = xchacha_encrypt(key, nonce, b"Hast du heute Strom?", aad)
print("e2e1:" + base64.urlsafe_b64encode(nonce + ct).decode().rstrip('='))
