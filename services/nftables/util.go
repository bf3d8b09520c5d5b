package nftables

import "time"

func timeoutOf(seconds int) time.Duration { return time.Duration(seconds) * time.Second }
