package pricing

// DefaultHoldBlock is how many response bytes are held per store call.
const DefaultHoldBlock = 1 << 20

// Usage prices units the upstream reports in a header: Amount per unit, at
// most Reserve units.
type Usage struct {
	Header  string
	Amount  int64
	Reserve int64
}

// Compound is a price by request, by request and response bytes, and by
// reported usage. The terms add up, each rounded up on its own:
//
//	Request + ceil(reqBytes/size)·a + ceil(respBytes/size)·b + min(reported, Reserve)·c
type Compound struct {
	Request       int64
	RequestBytes  *Rate
	ResponseBytes *Rate
	Usage         *Usage
	HoldBlock     int64 // response bytes held per store call; 0 for the default
}

// Total is what a request costs once its bytes and usage are known. A usage
// report that is missing or bad counts as the full reserve.
func (c Compound) Total(reqBytes, respBytes, reported int64, reportedOK bool) (int64, error) {
	terms := []int64{c.Request}
	if c.RequestBytes != nil {
		t, err := c.RequestBytes.Cost(reqBytes)
		if err != nil {
			return 0, err
		}
		terms = append(terms, t)
	}
	if c.ResponseBytes != nil {
		t, err := c.ResponseBytes.Cost(respBytes)
		if err != nil {
			return 0, err
		}
		terms = append(terms, t)
	}
	if c.Usage != nil {
		units := c.Usage.Reserve
		if reportedOK && reported >= 0 && reported < units {
			units = reported
		}
		t, err := mul(units, c.Usage.Amount)
		if err != nil {
			return 0, err
		}
		terms = append(terms, t)
	}
	return add(terms...)
}

// Block returns the response bytes held per store call: HoldBlock rounded up
// to whole pricing units, at least one unit.
func (c Compound) Block() int64 { return c.BlockOf(c.ResponseBytes) }

// BlockOf returns the bytes held per store call under rate r: HoldBlock
// rounded up to whole units of r, at least one unit; 0 without a rate.
func (c Compound) BlockOf(r *Rate) int64 {
	if r == nil {
		return 0
	}
	block := c.HoldBlock
	if block <= 0 {
		block = DefaultHoldBlock
	}
	return min(r.Units(block), MaxAmount/r.Per) * r.Per
}

// UpFront is the hold a request takes before it is forwarded: up to max,
// the request term, the Content-Length term, the first response block and
// the usage reserve; at least min, the same with one pricing unit of
// response in place of the block. A contentLength below 0 is a body of
// unknown length: its first block is held as the response's is. A balance
// below min is a 402.
func (c Compound) UpFront(contentLength int64) (max, min int64, err error) {
	fixed := []int64{c.Request}
	if c.RequestBytes != nil && contentLength >= 0 {
		t, err := c.RequestBytes.Cost(contentLength)
		if err != nil {
			return 0, 0, err
		}
		fixed = append(fixed, t)
	}
	if c.Usage != nil {
		t, err := mul(c.Usage.Reserve, c.Usage.Amount)
		if err != nil {
			return 0, 0, err
		}
		fixed = append(fixed, t)
	}
	if min, err = add(fixed...); err != nil {
		return 0, 0, err
	}
	max = min
	for _, r := range []*Rate{c.RequestBytes, c.ResponseBytes} {
		if r == nil || (r == c.RequestBytes && contentLength >= 0) {
			continue
		}
		block, err := r.Cost(c.BlockOf(r))
		if err != nil {
			return 0, 0, err
		}
		if max, err = add(max, block); err != nil {
			return 0, 0, err
		}
		if min, err = add(min, r.Amount); err != nil {
			return 0, 0, err
		}
	}
	return max, min, nil
}
