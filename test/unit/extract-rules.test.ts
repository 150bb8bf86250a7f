import { describe, expect, it } from 'vitest';
import { DEFAULT_EXTRACTION_LIMITS, RuleExtractor, extractByRules, extractionToOps, type Extraction } from '../../src/graph/extract/index.js';
import { splitSentences } from '../../src/graph/extract/rules.js';

/** "kind:label", in first-mention order. */
function entities(x: Extraction): string[] {
  return x.entities.map((e) => `${e.kind}:${e.label}`);
}

/** "source -relation-> target" for stated relations (co-occurrences are checked separately). */
function stated(x: Extraction): string[] {
  return x.relations.filter((r) => r.relation !== 'co_occurs').map((r) => `${r.source.label} -${r.relation}-> ${r.target.label}`);
}

function coOccurring(x: Extraction): string[] {
  return x.relations.filter((r) => r.relation === 'co_occurs').map((r) => [r.source.label, r.target.label].sort().join(' ~ '));
}

interface Case {
  text: string;
  entities: string[];
  relations: string[];
}

const CASES: Case[] = [
  {
    text: 'Jane Doe manages the Apollo project. Apollo depends on PostgreSQL and Redis.',
    entities: ['entity:Jane Doe', 'entity:Apollo', 'code:PostgreSQL', 'entity:Redis'],
    relations: ['Jane Doe -manages-> Apollo', 'Apollo -depends_on-> PostgreSQL', 'Apollo -depends_on-> Redis'],
  },
  {
    text: 'Acme Corp owns the New York City office; Bob Smith reports to Jane Doe.',
    entities: ['entity:Acme Corp', 'entity:New York City', 'entity:Bob Smith', 'entity:Jane Doe'],
    relations: ['Acme Corp -owns-> New York City', 'Bob Smith -reports_to-> Jane Doe'],
  },
  {
    text: 'MemoryService calls parseInput() from src/protocol/validation.ts.',
    entities: ['code:MemoryService', 'code:parseInput', 'code:src/protocol/validation.ts'],
    relations: ['MemoryService -calls-> parseInput'],
  },
  {
    text: 'The `OrderService` class extends `BaseService` and implements `Repository<Order>`.',
    entities: ['code:OrderService', 'code:BaseService', 'code:Repository<Order>'],
    relations: ['OrderService -extends-> BaseService', 'OrderService -implements-> Repository<Order>'],
  },
  {
    text: 'The gateway module imports ioredis and pkg.module; config lives in AETERNA_LLM_URL and snake_case_name.',
    entities: ['code:pkg.module', 'code:AETERNA_LLM_URL', 'code:snake_case_name'],
    relations: [],
  },
  {
    text: 'The Buildkite pipeline replaced Jenkins last year. Jenkins was replaced by Buildkite.',
    entities: ['entity:Buildkite', 'entity:Jenkins'],
    relations: ['Buildkite -replaced-> Jenkins'],
  },
  {
    text: 'Alice, Bob and Carol use Redis and Postgres.',
    entities: ['entity:Alice', 'entity:Bob', 'entity:Carol', 'entity:Redis', 'entity:Postgres'],
    relations: [
      'Alice -uses-> Redis',
      'Alice -uses-> Postgres',
      'Bob -uses-> Redis',
      'Bob -uses-> Postgres',
      'Carol -uses-> Redis',
      'Carol -uses-> Postgres',
    ],
  },
  {
    text: 'Jane works on Apollo and manages Zeus. Apollo uses Redis and Zeus uses Kafka.',
    entities: ['entity:Jane', 'entity:Apollo', 'entity:Zeus', 'entity:Redis', 'entity:Kafka'],
    relations: ['Jane -works_on-> Apollo', 'Jane -manages-> Zeus', 'Apollo -uses-> Redis', 'Zeus -uses-> Kafka'],
  },
  {
    text: 'The Apollo project, which depends on Kafka, is owned by Jane.',
    entities: ['entity:Apollo', 'entity:Kafka', 'entity:Jane'],
    relations: ['Apollo -depends_on-> Kafka', 'Jane -owns-> Apollo'],
  },
  {
    text: 'Bank of America is part of the FDIC network. Ludwig van Beethoven works on Symphony.',
    entities: ['entity:Bank of America', 'entity:FDIC', 'entity:Ludwig van Beethoven', 'entity:Symphony'],
    relations: ['Bank of America -part_of-> FDIC', 'Ludwig van Beethoven -works_on-> Symphony'],
  },
  {
    text: 'Acme Inc. uses Snowflake, e.g. for analytics. Jane D. Doe leads Apollo.',
    entities: ['entity:Acme Inc', 'entity:Snowflake', 'entity:Jane D. Doe', 'entity:Apollo'],
    relations: ['Acme Inc -uses-> Snowflake', 'Jane D. Doe -manages-> Apollo'],
  },
  {
    text: 'The AWS S3 bucket is managed by the SRE team. The deploy pipeline uses GitHub Actions for CI.',
    entities: ['entity:AWS S3', 'entity:SRE', 'entity:GitHub Actions', 'entity:CI'],
    relations: ['SRE -manages-> AWS S3'],
  },
  {
    text: 'The docs are at https://docs.Example.com/Guide/Setup?x=1. Contact jane.doe@acme.com or visit www.acme.com/Status.',
    entities: ['url:https://docs.Example.com/Guide/Setup?x=1', 'email:jane.doe@acme.com', 'url:www.acme.com/Status'],
    relations: [],
  },
  {
    text: 'São Paulo and Zürich both use C++ and C#.',
    entities: ['entity:São Paulo', 'entity:Zürich', 'entity:C++', 'entity:C#'],
    relations: ['São Paulo -uses-> C++', 'São Paulo -uses-> C#', 'Zürich -uses-> C++', 'Zürich -uses-> C#'],
  },
  {
    text: "The `billing-api` service is a component of Atlas and is called by checkout_worker. Jane's team owns Atlas.",
    entities: ['code:billing-api', 'entity:Atlas', 'code:checkout_worker', 'entity:Jane'],
    relations: ['billing-api -part_of-> Atlas', 'checkout_worker -calls-> billing-api'],
  },
];

describe('RuleExtractor on realistic memories', () => {
  it.each(CASES)('$text', async ({ text, entities: expectedEntities, relations }) => {
    const x = await new RuleExtractor().extract(text);
    expect(entities(x)).toEqual(expectedEntities);
    expect(stated(x)).toEqual(relations);
    for (const r of x.relations) expect(r.weight).toBe(r.relation === 'co_occurs' ? 0.3 : 1);
  });

  it('is deterministic: the same text gives the same extraction, every time and in a fresh extractor', async () => {
    for (const { text } of CASES) {
      const first = extractByRules(text);
      expect(extractByRules(text)).toEqual(first);
      expect(await new RuleExtractor().extract(text)).toEqual(first);
    }
  });

  it('gives the same node and edge ids whatever the order and spelling of mentions', () => {
    const ids = (text: string) =>
      extractionToOps(extractByRules(text), { id: 'm1' })
        .map((op) => ('id' in op ? op.id : ''))
        .sort();
    expect(ids('Alice met Bob in Berlin.')).toEqual(ids('In Berlin, Bob met Alice.'));
    expect(ids('ACME CORP uses Redis.')).toEqual(ids('Acme Corp uses Redis.'));
  });

  it('counts mentions and keeps the first spelling', () => {
    const x = extractByRules('Acme Corp uses Redis. ACME CORP also uses Kafka. Redis is fast.');
    expect(x.entities).toEqual([
      { label: 'Acme Corp', kind: 'entity', mentions: 2 },
      { label: 'Redis', kind: 'entity', mentions: 2 },
      { label: 'Kafka', kind: 'entity', mentions: 1 },
    ]);
  });
});

describe('RuleExtractor false positives', () => {
  it.each([
    ['The team met on Monday in March. We decided to use Kafka.', ['entity:Kafka']],
    ['Use Redis for sessions. Never deploy on Fridays. Please ask before merging.', ['entity:Redis']],
    ['TODO: FYI the OK from I and IT is ASAP.', []],
    ['DO NOT DEPLOY ON FRIDAYS WITHOUT APPROVAL.', []],
    ['I think NASA uses AWS.', ['entity:NASA', 'entity:AWS']],
    ['Version 2.0.1 ships today, e.g. v1.2 and i.e. 24/7 and/or 1/2/2024.', []],
    ['Our Q&A: the answer is 42. Yesterday it rained.', []],
    ['See https://GitHub.com/Acme/Repo/Pull/12 for the Apollo fix.', ['url:https://GitHub.com/Acme/Repo/Pull/12', 'entity:Apollo']],
  ])('%s', (text, expected) => {
    expect(entities(extractByRules(text))).toEqual(expected);
  });

  it('states no relation that the text negates, but still records the co-occurrence', () => {
    const x = extractByRules("Apollo no longer uses MySQL. Zeus doesn't depend on Kafka. Atlas never owned Hermes.");
    expect(stated(x)).toEqual([]);
    expect(coOccurring(x)).toEqual(['Apollo ~ MySQL', 'Kafka ~ Zeus', 'Atlas ~ Hermes']);
  });

  it('does not take a URL apart or end a sentence inside it', () => {
    expect(splitSentences('Read https://x.io/a.b?c=D.E first. Then Redis.')).toEqual(['Read https://x.io/a.b?c=D.E first.', 'Then Redis.']);
    const x = extractByRules('Read (https://en.wikipedia.org/wiki/Foo_(bar)), then ask Jane.');
    expect(entities(x)).toEqual(['url:https://en.wikipedia.org/wiki/Foo_(bar)', 'entity:Jane']);
  });
});

describe('RuleExtractor co-occurrence', () => {
  it('links the other entities of a sentence, once per pair, in one direction whatever their order', () => {
    const ab = extractByRules('Alice met Bob in Berlin.');
    const ba = extractByRules('In Berlin, Bob met Alice.');
    expect(coOccurring(ab)).toEqual(['Alice ~ Bob', 'Berlin ~ Bob', 'Alice ~ Berlin']);
    const dir = (x: Extraction) => x.relations.map((r) => `${r.source.label}>${r.target.label}`).sort();
    expect(dir(ab)).toEqual(dir(ba));
  });

  it('leaves out pairs a sentence relates explicitly, in any sentence', () => {
    const x = extractByRules('Apollo uses Redis. Apollo and Redis are both fast, unlike Kafka.');
    expect(stated(x)).toEqual(['Apollo -uses-> Redis']);
    expect(coOccurring(x)).toEqual(['Kafka ~ Redis', 'Apollo ~ Kafka']);
  });

  it('does not link entities of different sentences', () => {
    expect(extractByRules('Alice likes tea.\nBob likes coffee.').relations).toEqual([]);
  });

  it('caps the pairs per sentence, nearest mentions first', () => {
    const names = ['Alpha', 'Bravo', 'Charlie', 'Delta', 'Echo', 'Foxtrot', 'Golf', 'Hotel'];
    const x = extractByRules(`${names.join(', ')} met.`);
    expect(x.relations).toHaveLength(DEFAULT_EXTRACTION_LIMITS.maxPairsPerSentence);
    // 7 neighbouring pairs come first, then pairs two apart.
    expect(coOccurring(x).slice(0, 7)).toEqual(names.slice(0, -1).map((n, i) => [n, names[i + 1]!].sort().join(' ~ ')));
    expect(coOccurring(x).slice(7)).toEqual(['Alpha ~ Charlie', 'Bravo ~ Delta', 'Charlie ~ Echo']);
  });
});

describe('RuleExtractor caps', () => {
  it('keeps at most maxEntities, preferring the most mentioned', () => {
    const many = Array.from({ length: 80 }, (_, i) => `Team${String.fromCharCode(65 + (i % 26))}${String.fromCharCode(65 + Math.floor(i / 26))}x`);
    const text = `${many.map((n) => `${n} met.`).join(' ')} TeamZDx met. TeamZDx met.`;
    const x = extractByRules(text);
    expect(x.entities).toHaveLength(DEFAULT_EXTRACTION_LIMITS.maxEntities);
    expect(x.entities.some((e) => e.label === 'TeamZDx' && e.mentions === 2)).toBe(true);
    expect(x.entities.slice(0, 3).map((e) => e.label)).toEqual(['TeamAAx', 'TeamBAx', 'TeamCAx']);
  });

  it('keeps at most maxRelations, stated ones before co-occurrences', () => {
    const sentences = Array.from({ length: 40 }, (_, i) => `Svc${i}x uses Lib${i}x, Cache${i}x and Queue${i}x.`);
    const x = extractByRules(sentences.join(' '), { ...DEFAULT_EXTRACTION_LIMITS, maxEntities: 1_000 });
    expect(x.relations).toHaveLength(DEFAULT_EXTRACTION_LIMITS.maxRelations);
    expect(x.relations.filter((r) => r.relation === 'uses')).toHaveLength(100);
  });

  it('drops labels over maxLabelChars instead of cutting them', () => {
    const long = `https://example.com/${'a'.repeat(250)}`;
    const x = extractByRules(`Jane shared ${long} with Bob.`);
    expect(entities(x)).toEqual(['entity:Jane', 'entity:Bob']);
    expect(coOccurring(x)).toEqual(['Bob ~ Jane']);
  });

  it('handles a large memory in one pass', () => {
    const text = 'Jane Doe manages Apollo, which uses Redis and `parseInput()`. '.repeat(1_000);
    const x = extractByRules(text);
    expect(entities(x)).toEqual(['entity:Jane Doe', 'entity:Apollo', 'entity:Redis', 'code:parseInput']);
    expect(x.entities.every((e) => e.mentions === 1_000)).toBe(true);
  });
});
