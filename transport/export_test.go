package transport

// RawWriteForTest writes b to c's stream without framing or encryption (tests).
func RawWriteForTest(c *Conn, b []byte) error {
	_, err := c.raw.Write(b)
	return err
}
