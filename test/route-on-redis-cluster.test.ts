// The channel affinity tests of route.test.ts on a Redis Cluster of three
// masters with a replica each, started for this file on loopback ports.
import { useRedisCluster } from './helpers/redis';
import './route.test';

useRedisCluster();
