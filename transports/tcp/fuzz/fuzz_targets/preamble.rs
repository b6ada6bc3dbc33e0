//! Arbitrary bytes into the suite preamble's decoders
//! (`transport_tcp::preamble`), as a listener reads a dialer's offer and a
//! dialer reads a listener's answer.
//!
//! The first byte picks the suites the listener accepts (bit 0: ChaCha,
//! bit 1: AES-GCM; none is allowed, as a listener that accepts nothing the
//! offer names). The rest is the offer: `offer_len` on its head, then
//! `Offer::decode` on exactly that many bytes, as the listener reads it.
//! Checks that nothing panics; that `offer_len` never asks for more than
//! `MAX_OFFER_LEN` bytes; that an accepted offer re-encodes to the same
//! bytes; that the listener's choice is the first suite of the offer it
//! accepts, or a refusal when there is none; and that the answer's first 3
//! input bytes, when they decode, re-encode to themselves.

#![no_main]

use libfuzzer_sys::fuzz_target;
use transport_tcp::CipherSuite;
use transport_tcp::preamble::{
    ANSWER_LEN, Answer, MAX_OFFER_LEN, OFFER_HEAD_LEN, Offer, Refusal, choose, offer_len,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, offer)) = data.split_first() else {
        return;
    };
    let accepted: Vec<CipherSuite> = CipherSuite::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, s)| s)
        .collect();

    if let Ok(len) = offer_len(offer) {
        assert!((OFFER_HEAD_LEN + 1..=MAX_OFFER_LEN).contains(&len));
        if let Some(bytes) = offer.get(..len) {
            if let Ok(decoded) = Offer::decode(bytes) {
                assert_eq!(decoded.encode(), bytes);
                let tag = decoded.network_tag;
                let expected = decoded
                    .suite_ids()
                    .iter()
                    .filter_map(|&id| CipherSuite::from_id(id))
                    .find(|s| accepted.contains(s));
                match choose(&decoded, &tag, &accepted) {
                    Answer::Accept(suite) => assert_eq!(Some(suite), expected),
                    Answer::Refuse(refusal) => {
                        assert_eq!(refusal, Refusal::NoCommonSuite);
                        assert_eq!(expected, None);
                    }
                }
                // Another network's tag is refused whatever the suites.
                let mut other = tag;
                other[0] ^= 1;
                assert_eq!(
                    choose(&decoded, &other, &accepted),
                    Answer::Refuse(Refusal::NetworkMismatch)
                );
            }
        }
    }
    // Any other length is refused.
    if offer.len() != offer_len(offer).unwrap_or(usize::MAX) {
        assert!(Offer::decode(offer).is_err());
    }

    if let Some(bytes) = offer.get(..ANSWER_LEN) {
        let answer = [bytes[0], bytes[1], bytes[2]];
        if let Ok(decoded) = Answer::decode(answer) {
            assert_eq!(decoded.encode(), answer);
        }
    }
});
