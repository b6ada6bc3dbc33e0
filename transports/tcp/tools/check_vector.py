# Checks the test vectors of adr/0004-tcp-noise-wire-format.md (section 13)
# independently of the Rust code: the suite preamble, Noise XX for both
# suites and one transport message each way, written from the ADR and the
# Noise specification (revision 34) with no Noise library. Needs Python 3
# and `cryptography` (X25519, Ed25519, ChaCha20-Poly1305, AES-GCM);
# hashes come from hashlib. Prints each suite's values under the names the
# Rust test uses (transports/tcp/src/handshake.rs, CHACHAPOLY and AESGCM);
# compare them with the ADR. Not run by CI.
#
#   python3 transports/tcp/tools/check_vector.py
import hashlib, hmac, struct, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305, AESGCM
from cryptography.hazmat.primitives import serialization as ser

H = bytes.fromhex
def raw(pub): return pub.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)

class Suite:
    def __init__(s, name, hashname, cipher):
        s.name, s.hashname, s.cipher = name, hashname, cipher
        s.hashlen = 32
        s.blocklen = 64
    def hash(s, d): return hashlib.new(s.hashname, d).digest()
    def hmac(s, k, d): return hmac.new(k, d, s.hashname).digest()
    def hkdf(s, ck, ikm, n):
        t = s.hmac(ck, ikm); o1 = s.hmac(t, b"\x01"); o2 = s.hmac(t, o1 + b"\x02")
        return (o1, o2) if n == 2 else (o1, o2, s.hmac(t, o2 + b"\x03"))
    def nonce(s, n):
        return b"\0"*4 + (struct.pack("<Q", n) if s.cipher == "chacha" else struct.pack(">Q", n))
    def enc(s, k, n, ad, p):
        c = ChaCha20Poly1305(k) if s.cipher == "chacha" else AESGCM(k)
        return c.encrypt(s.nonce(n), p, ad)
    def dec(s, k, n, ad, c):
        a = ChaCha20Poly1305(k) if s.cipher == "chacha" else AESGCM(k)
        return a.decrypt(s.nonce(n), c, ad)

class SS:  # symmetric state
    def __init__(s, suite, prologue):
        s.x = suite
        name = suite.name.encode()
        s.h = name + b"\0"*(32-len(name)) if len(name) <= 32 else suite.hash(name)
        s.ck = s.h; s.k = None; s.n = 0
        s.mix_hash(prologue)
    def mix_hash(s, d): s.h = s.x.hash(s.h + d)
    def mix_key(s, ikm): s.ck, s.k = s.x.hkdf(s.ck, ikm, 2); s.n = 0
    def eah(s, p):
        if s.k is None: s.mix_hash(p); return p
        c = s.x.enc(s.k, s.n, s.h, p); s.n += 1; s.mix_hash(c); return c
    def dah(s, c):
        if s.k is None: s.mix_hash(c); return c
        p = s.x.dec(s.k, s.n, s.h, c); s.n += 1; s.mix_hash(c); return p
    def split(s): return s.x.hkdf(s.ck, b"", 2)

def dh(priv, pub): return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))
def pub(priv): return raw(X25519PrivateKey.from_private_bytes(priv).public_key())

def u16(n): return struct.pack(">H", n)
def u64(n): return struct.pack(">Q", n)

def identity_payload(ed_secret, s_pub):
    k = Ed25519PrivateKey.from_private_bytes(ed_secret)
    dom = b"switchyard/noise-static/v1"
    return b"\x01" + raw(k.public_key()) + k.sign(u64(len(dom)) + dom + s_pub)

def network_tag(nid):
    dom = b"switchyard/network-tag/v1"
    return hashlib.sha256(u64(len(dom)) + dom + nid).digest()[:8]

def run(suite, offered_ids, chosen_id):
    nid = b"switchyard-test"
    eds_i = H("611830d3641a68f94a690dcc25d1f4b0dac948325ac18f6dd32564371735f32c")
    eds_r = H("1fbec814b18b1d4c3eaa7cec41007e04bf0a98453b06ec7582aa29882c52eb7e")
    s_i, s_r, e_i, e_r = b"\x11"*32, b"\x22"*32, b"\x33"*32, b"\x44"*32
    offer = b"\x01" + network_tag(nid) + bytes([len(offered_ids)]) + bytes(offered_ids)
    answer = bytes([1, 0, chosen_id])
    prologue = b"switchyard-noise-v2" + u16(len(nid)) + nid + offer + answer
    pay_i = identity_payload(eds_i, pub(s_i)); pay_r = identity_payload(eds_r, pub(s_r))
    I = SS(suite, prologue); R = SS(suite, prologue)
    # -> e
    m1 = pub(e_i); I.mix_hash(pub(e_i)); m1 += I.eah(b"")
    R.mix_hash(m1[:32]); R.dah(m1[32:])
    # <- e, ee, s, es, payload
    m2 = pub(e_r); R.mix_hash(pub(e_r)); R.mix_key(dh(e_r, pub(e_i)))
    m2 += R.eah(pub(s_r)); R.mix_key(dh(s_r, pub(e_i))); m2 += R.eah(pay_r)
    I.mix_hash(m2[:32]); I.mix_key(dh(e_i, m2[:32])); rs = I.dah(m2[32:80]); I.mix_key(dh(e_i, rs))
    assert I.dah(m2[80:]) == pay_r
    # -> s, se, payload
    m3 = I.eah(pub(s_i)); I.mix_key(dh(s_i, pub(e_r))); m3 += I.eah(pay_i)
    rs2 = R.dah(m3[:48]); R.mix_key(dh(e_r, rs2)); assert R.dah(m3[48:]) == pay_i
    assert I.h == R.h
    k1, k2 = I.split()
    data = H("0b12090820120568656c6c6f")
    hello = H("550a530803120f737769746368796172642d746573741a20191fc38f134aaf1b"
              "7fdb1f86330b9d03e94bd4ba884f490389de964448e89b3f220a082010401880"
              "800420043210737769746368796172642f302e312e30")
    c_data = suite.enc(k1[:32], 0, b"", data); c_hello = suite.enc(k2[:32], 0, b"", hello)
    return {
        "OFFER": offer, "ANSWER": answer, "PROLOGUE": prologue,
        "MESSAGE_1": u16(len(m1)) + m1, "MESSAGE_2": u16(len(m2)) + m2, "MESSAGE_3": u16(len(m3)) + m3,
        "HANDSHAKE_HASH": I.h,
        "DATA_WIRE": u16(len(c_data)) + c_data, "HELLO_WIRE": u16(len(c_hello)) + c_hello,
    }

chacha = Suite("Noise_XX_25519_ChaChaPoly_BLAKE2s", "blake2s", "chacha")
aes = Suite("Noise_XX_25519_AESGCM_SHA256", "sha256", "aes")
for title, suite, offered, chosen in [("chachapoly", chacha, [1], 1), ("aesgcm", aes, [2, 1], 2)]:
    print("==", title)
    for k, v in run(suite, offered, chosen).items():
        print(f"{k} = {v.hex()}")
