//! Gorilla-compressed sample chunks (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time
//! Series Database", VLDB 2015), the encoding Prometheus' head block uses: timestamps as
//! delta-of-deltas, values as the XOR with the previous value. Regular scrapes or exports of a
//! slowly changing value cost one to two bytes per sample.
//!
//! Timestamps are milliseconds. The first sample is stored raw; the second as a raw delta; then
//! each delta-of-delta in one of five buckets (`0`, `10`+7 bits, `110`+9 bits, `1110`+12 bits,
//! `1111`+64 bits), and each value as `0` (same), `10` + the meaningful bits inside the previous
//! XOR's window, or `11` + 5 bits of leading zeros + 6 bits of length + the meaningful bits.
//!
//! A chunk whose first value is a whole number (counters, counts, most gauges) stores its values
//! as integers instead, each as the delta-of-delta of the value in the same five buckets as the
//! timestamps, as VictoriaMetrics does: a counter growing by a few units per sample costs about
//! ten bits a sample instead of fifteen to twenty. A value that is not a whole number ends such a
//! chunk (the series starts a new one). The first bit of a chunk says which kind it is.

/// Appends bits to a byte vector.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (7 - self.used);
        }
        self.used = (self.used + 1) % 8;
    }

    /// The low `count` bits of `value`, most significant first.
    fn push_bits(&mut self, value: u64, count: u8) {
        for i in (0..count).rev() {
            self.push_bit((value >> i) & 1 == 1);
        }
    }
}

/// Reads bits written by [`BitWriter`].
struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.position / 8)?;
        let bit = (byte >> (7 - self.position % 8)) & 1 == 1;
        self.position += 1;
        Some(bit)
    }

    fn bits(&mut self, count: u8) -> Option<u64> {
        let mut value = 0u64;
        for _ in 0..count {
            value = (value << 1) | u64::from(self.bit()?);
        }
        Some(value)
    }
}

/// A chunk of samples in time order, appended to until it is full.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: u16,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_value: u64,
    /// Values are whole numbers stored as delta-of-deltas.
    integers: bool,
    last_value_delta: i64,
    /// Leading and trailing zeros of the last XOR that stored its bits, for window reuse.
    leading: u8,
    trailing: u8,
}

impl Chunk {
    /// Samples per chunk, as Prometheus: small enough to decode quickly, large enough to compress.
    pub const CAPACITY: u16 = 120;

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= Self::CAPACITY
    }

    pub fn first_t(&self) -> i64 {
        self.first_t
    }

    pub fn last_t(&self) -> i64 {
        self.last_t
    }

    /// The newest sample's value.
    pub fn last_value(&self) -> Option<f64> {
        (self.count > 0).then(|| f64::from_bits(self.last_value))
    }

    /// Bytes of encoded samples.
    pub fn bytes(&self) -> usize {
        self.bits.bytes.len()
    }

    /// Capacity of the encoder's buffer.
    pub fn capacity(&self) -> usize {
        self.bits.bytes.capacity()
    }

    /// Appends the chunk to a packed buffer (see [`packed`]) and empties it, keeping its
    /// encoder's buffer for the next chunk.
    pub fn seal_into(&mut self, out: &mut Vec<u8>) {
        let bytes = &self.bits.bytes;
        out.reserve_exact(PACKED_HEADER + bytes.len());
        out.push(self.count as u8);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
        let mut buffer = std::mem::take(&mut self.bits.bytes);
        // The next chunk will likely be about as long: room for that and an eighth more,
        // instead of the doubling growth's spare half.
        let room = buffer.len() + buffer.len() / 8;
        buffer.clear();
        buffer.shrink_to(room);
        *self = Chunk::default();
        self.bits.bytes = buffer;
    }

    /// Appends a sample; `t` must be after the last sample's.
    /// Whether `v` can be appended: anything to a float chunk, whole numbers to an integer one.
    pub fn accepts(&self, v: f64) -> bool {
        self.count == 0 || !self.integers || whole(v).is_some()
    }

    /// Appends a sample; `t` must be after the last sample's and the chunk must accept `v`.
    pub fn push(&mut self, t: i64, v: f64) {
        if !self.accepts(v) {
            unreachable_value();
            return;
        }
        let value = v.to_bits();
        match self.count {
            0 => {
                self.integers = whole(v).is_some();
                self.bits.push_bit(self.integers);
                self.bits.push_bits(t as u64, 64);
                self.bits.push_bits(value, 64);
                self.first_t = t;
            }
            1 => {
                let delta = t - self.last_t;
                self.bits.push_bits(delta as u64, 64);
                self.push_value(value);
                self.last_delta = delta;
            }
            _ => {
                let delta = t - self.last_t;
                self.push_dod(delta - self.last_delta);
                self.push_value(value);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_value = value;
        self.count += 1;
    }

    fn push_dod(&mut self, dod: i64) {
        match dod {
            0 => self.bits.push_bit(false),
            -63..=64 => {
                self.bits.push_bits(0b10, 2);
                self.bits.push_bits(dod as u64, 7);
            }
            -255..=256 => {
                self.bits.push_bits(0b110, 3);
                self.bits.push_bits(dod as u64, 9);
            }
            -2047..=2048 => {
                self.bits.push_bits(0b1110, 4);
                self.bits.push_bits(dod as u64, 12);
            }
            _ => {
                self.bits.push_bits(0b1111, 4);
                self.bits.push_bits(dod as u64, 64);
            }
        }
    }

    fn push_value(&mut self, value: u64) {
        if self.integers {
            let (Some(v), Some(last)) = (
                whole(f64::from_bits(value)),
                whole(f64::from_bits(self.last_value)),
            ) else {
                unreachable_value();
                return;
            };
            let delta = v.wrapping_sub(last);
            self.push_dod(delta.wrapping_sub(self.last_value_delta));
            self.last_value_delta = delta;
            return;
        }
        let xor = value ^ self.last_value;
        if xor == 0 {
            self.bits.push_bit(false);
            return;
        }
        self.bits.push_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.count > 1 && leading >= self.leading && trailing >= self.trailing {
            // Fits in the previous window.
            self.bits.push_bit(false);
            let width = 64 - self.leading - self.trailing;
            self.bits.push_bits(xor >> self.trailing, width);
        } else {
            self.bits.push_bit(true);
            let width = 64 - leading - trailing;
            self.bits.push_bits(u64::from(leading), 5);
            // 64 meaningful bits are written as 0: six bits hold 0..=63.
            self.bits.push_bits(u64::from(width % 64), 6);
            self.bits.push_bits(xor >> trailing, width);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// The samples, in time order.
    pub fn samples(&self) -> ChunkIter<'_> {
        decode(&self.bits.bytes, self.count)
    }
}

/// Bytes before each chunk in a packed buffer: its sample count (u8) and its length (u16, LE).
pub const PACKED_HEADER: usize = 3;

/// A chunk in a packed buffer.
#[derive(Debug, Clone, Copy)]
pub struct PackedChunk<'a> {
    pub count: u16,
    pub bytes: &'a [u8],
    /// Offset of the byte after the chunk in the buffer.
    pub end: usize,
}

impl<'a> PackedChunk<'a> {
    /// The first sample's time (stored raw after the chunk's kind bit).
    pub fn first_t(&self) -> i64 {
        let mut reader = BitReader {
            bytes: self.bytes,
            position: 1,
        };
        reader.bits(64).unwrap_or(0) as i64
    }

    pub fn samples(&self) -> ChunkIter<'a> {
        decode(self.bytes, self.count)
    }
}

/// The chunks of a buffer written by [`Chunk::seal_into`], oldest first. Full chunks cost
/// their encoded bytes and a 3-byte header, with no allocation of their own.
pub fn packed(buffer: &[u8]) -> impl Iterator<Item = PackedChunk<'_>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let header = buffer.get(offset..offset + PACKED_HEADER)?;
        let len = usize::from(u16::from_le_bytes([header[1], header[2]]));
        let start = offset + PACKED_HEADER;
        let bytes = buffer.get(start..start + len)?;
        offset = start + len;
        Some(PackedChunk {
            count: u16::from(header[0]),
            bytes,
            end: offset,
        })
    })
}

/// Decodes the `count` samples of a chunk's bytes.
fn decode(bytes: &[u8], count: u16) -> ChunkIter<'_> {
    ChunkIter {
        reader: BitReader { bytes, position: 0 },
        integers: false,
        value_delta: 0,
        remaining: count,
        index: 0,
        t: 0,
        delta: 0,
        value: 0,
        leading: 0,
        trailing: 0,
    }
}

/// Decodes a [`Chunk`].
pub struct ChunkIter<'a> {
    reader: BitReader<'a>,
    integers: bool,
    value_delta: i64,
    remaining: u16,
    index: u16,
    t: i64,
    delta: i64,
    value: u64,
    leading: u8,
    trailing: u8,
}

impl ChunkIter<'_> {
    fn read_dod(&mut self) -> Option<i64> {
        Some(if !self.reader.bit()? {
            0
        } else if !self.reader.bit()? {
            sign_extend(self.reader.bits(7)?, 7)
        } else if !self.reader.bit()? {
            sign_extend(self.reader.bits(9)?, 9)
        } else if !self.reader.bit()? {
            sign_extend(self.reader.bits(12)?, 12)
        } else {
            self.reader.bits(64)? as i64
        })
    }

    fn read_value(&mut self) -> Option<u64> {
        if self.integers {
            self.value_delta = self.value_delta.wrapping_add(self.read_dod()?);
            let last = f64::from_bits(self.value) as i64;
            return Some((last.wrapping_add(self.value_delta) as f64).to_bits());
        }
        if !self.reader.bit()? {
            return Some(self.value);
        }
        if self.reader.bit()? {
            self.leading = self.reader.bits(5)? as u8;
            let mut width = self.reader.bits(6)? as u8;
            if width == 0 {
                width = 64;
            }
            self.trailing = 64 - self.leading - width;
        }
        let width = 64 - self.leading - self.trailing;
        let xor = self.reader.bits(width)? << self.trailing;
        Some(self.value ^ xor)
    }

    fn next_sample(&mut self) -> Option<(i64, f64)> {
        match self.index {
            0 => {
                self.integers = self.reader.bit()?;
                self.t = self.reader.bits(64)? as i64;
                self.value = self.reader.bits(64)?;
            }
            1 => {
                self.delta = self.reader.bits(64)? as i64;
                self.t += self.delta;
                self.value = self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.delta += dod;
                self.t += self.delta;
                self.value = self.read_value()?;
            }
        }
        self.index += 1;
        Some((self.t, f64::from_bits(self.value)))
    }
}

/// `v` as an integer when it is a whole number that an `f64` holds exactly (and not `-0.0`).
fn whole(v: f64) -> Option<i64> {
    const LIMIT: f64 = (1u64 << 53) as f64;
    (v.fract() == 0.0 && v.abs() < LIMIT && ((v as i64) as f64).to_bits() == v.to_bits())
        .then_some(v as i64)
}

/// `push` on an integer chunk with a value it does not accept: callers check `accepts` first, so
/// this cannot happen; the value is dropped from the chunk rather than corrupting it.
#[cold]
fn unreachable_value() {
    debug_assert!(false, "a fractional value pushed into an integer chunk");
}

/// Reads the low `bits` of `value` as a two's-complement number; ranges are asymmetric by one
/// (`-63..=64` in 7 bits) so the top value wraps to the most negative and back.
fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    let signed = ((value << shift) as i64) >> shift;
    // 64 in 7 bits reads as -64: no dod in these buckets is that negative, so it meant +64.
    if signed == -(1 << (bits - 1)) {
        -signed
    } else {
        signed
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.next_sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `samples` as a series does (a new chunk when one does not accept a value) and
    /// checks they decode bit for bit; returns the first chunk.
    fn round_trip(samples: &[(i64, f64)]) -> Chunk {
        let mut chunks = vec![Chunk::default()];
        for &(t, v) in samples {
            if !chunks.last().unwrap().accepts(v) {
                chunks.push(Chunk::default());
            }
            chunks.last_mut().unwrap().push(t, v);
        }
        let decoded: Vec<(i64, f64)> = chunks.iter().flat_map(Chunk::samples).collect();
        let chunk = chunks.swap_remove(0);
        assert_eq!(decoded.len(), samples.len());
        for (got, want) in decoded.iter().zip(samples) {
            assert_eq!(got.0, want.0);
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "{got:?} vs {want:?}");
        }
        chunk
    }

    #[test]
    fn regular_samples_cost_about_a_byte_or_two() {
        // A counter exported every 15 s with small jitter.
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000 + (i % 3), (i * 7) as f64))
            .collect();
        let chunk = round_trip(&samples);
        let per_sample = chunk.bytes() as f64 / 120.0;
        assert!(per_sample < 2.5, "{per_sample} bytes per sample");
    }

    #[test]
    fn counters_in_whole_numbers_cost_about_ten_bits() {
        // A counter growing by 1 to 17 per 15 s export.
        let mut value = 1_000.0;
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| {
                value += (1 + (i * 7) % 17) as f64;
                (1_700_000_000_000 + i * 15_000, value)
            })
            .collect();
        let chunk = round_trip(&samples);
        let per_sample = chunk.bytes() as f64 / 120.0;
        assert!(per_sample < 1.5, "{per_sample} bytes per sample");
        // Large jumps, negatives and the limits of exact integers round-trip too.
        round_trip(&[
            (1, 0.0),
            (2, -5.0),
            (3, 9_007_199_254_740_991.0),
            (4, -9_007_199_254_740_991.0),
            (5, 3.0),
            (6, 3.0),
        ]);
    }

    #[test]
    fn a_fraction_is_not_accepted_by_an_integer_chunk() {
        let mut chunk = Chunk::default();
        chunk.push(1, 5.0);
        assert!(chunk.accepts(6.0));
        assert!(!chunk.accepts(6.5));
        assert!(!chunk.accepts(f64::NAN));
        assert!(!chunk.accepts(-0.0));
        let mut floats = Chunk::default();
        floats.push(1, 0.5);
        assert!(floats.accepts(6.0) && floats.accepts(f64::NAN));
    }

    #[test]
    fn every_bucket_and_special_value_round_trips() {
        let dods = [
            0i64, 1, -1, 63, 64, -63, 200, 256, -255, 2000, 2048, -2047, 5000, -90_000,
        ];
        let mut t = 1_000_000i64;
        let mut delta = 15_000i64;
        let mut samples = vec![(t, 1.0)];
        let values = [
            1.0,
            1.0,
            f64::NAN,
            f64::INFINITY,
            -0.0,
            f64::from_bits(0x7ff0_0000_0000_0002),
            1e300,
            -3.25,
            0.1,
            f64::MIN_POSITIVE,
            42.0,
            42.0,
            7.0,
            u64::MAX as f64,
        ];
        for (dod, v) in dods.iter().zip(values) {
            delta += dod;
            t += delta.max(1);
            samples.push((t, v));
        }
        round_trip(&samples);
    }

    #[test]
    fn random_walks_round_trip() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50 {
            let mut t = (next() % 1_000_000_000) as i64;
            let mut samples = Vec::new();
            for _ in 0..120 {
                t += 1 + (next() % 100_000) as i64;
                let v = match next() % 4 {
                    0 => (next() % 1000) as f64,
                    1 => f64::from_bits(next()),
                    2 => samples.last().map_or(0.0, |s: &(i64, f64)| s.1),
                    _ => (next() as f64) / 3.0,
                };
                samples.push((t, v));
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn sealed_chunks_pack_into_one_buffer_and_read_back() {
        let mut packed_bytes = Vec::new();
        let mut head = Chunk::default();
        let mut expected = Vec::new();
        for i in 0..300i64 {
            // Whole numbers, then fractions: the kind change seals a chunk early too.
            let value = if i < 200 { i as f64 } else { i as f64 + 0.5 };
            if head.is_full() || !head.accepts(value) {
                head.seal_into(&mut packed_bytes);
            }
            head.push(1_000 + i * 15_000, value);
            expected.push((1_000 + i * 15_000, value));
        }
        let chunks: Vec<PackedChunk> = packed(&packed_bytes).collect();
        // 120 + 80 whole numbers, then 100 fractions still in the head.
        assert_eq!(
            chunks.iter().map(|c| c.count).collect::<Vec<_>>(),
            [120, 80]
        );
        assert_eq!(chunks[1].first_t(), 1_000 + 120 * 15_000);
        assert_eq!(chunks[1].end, packed_bytes.len());
        let header_bytes = 2 * PACKED_HEADER;
        assert_eq!(
            chunks.iter().map(|c| c.bytes.len()).sum::<usize>() + header_bytes,
            packed_bytes.len()
        );
        let read: Vec<(i64, f64)> = chunks
            .iter()
            .flat_map(|c| c.samples())
            .chain(head.samples())
            .collect();
        assert_eq!(read, expected);
    }
}
