//! Test 12: bad input of every kind gets a 4xx problem+json and appends nothing.
