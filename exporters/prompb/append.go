package prompb

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// AppendTimeSeries appends to raw, a WriteRequest being marshalled, one
// WriteRequest.timeseries field: a TimeSeries of labels (its labels fields, already
// marshalled) and one sample of value at ms. A value of +0 is left out, as proto3's
// marshalling leaves it out, so the bytes are proto.Marshal's. It also returns the offset
// in raw of the sample's timestamp varint, for a sender that restamps the same series
// in place. The agent's remote_write exporter and the view's load generator both write
// their pushes with it.
func AppendTimeSeries(raw, labels []byte, value float64, ms int64) (out []byte, tsAt int) {
	sample := protowire.SizeTag(2) + protowire.SizeVarint(uint64(ms))
	bits := math.Float64bits(value)
	if bits != 0 {
		sample += protowire.SizeTag(1) + protowire.SizeFixed64()
	}
	size := len(labels) + protowire.SizeTag(2) + protowire.SizeBytes(sample)
	raw = protowire.AppendTag(raw, 1, protowire.BytesType) // WriteRequest.timeseries
	raw = protowire.AppendVarint(raw, uint64(size))
	raw = append(raw, labels...)
	raw = protowire.AppendTag(raw, 2, protowire.BytesType) // TimeSeries.samples
	raw = protowire.AppendVarint(raw, uint64(sample))
	if bits != 0 {
		raw = protowire.AppendTag(raw, 1, protowire.Fixed64Type) // Sample.value
		raw = binary.LittleEndian.AppendUint64(raw, bits)
	}
	raw = protowire.AppendTag(raw, 2, protowire.VarintType) // Sample.timestamp
	tsAt = len(raw)
	return protowire.AppendVarint(raw, uint64(ms)), tsAt
}
