package collector

import "testing/synctest"

func synctestWait() { synctest.Wait() }
