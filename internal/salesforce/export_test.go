package salesforce

// SessionCount is the number of cache keys the client holds, for tests of its memory.
func (c *Client) SessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}
