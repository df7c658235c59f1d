"""Task instructions for queries, E5 style (``Instruct: {task}\\nQuery: {text}``), kept as data
(the export turns each into a named prompt): MTEB task names (E5-mistral's wording), local dataset
names, then one default per task family. Documents (corpora, reranking candidates) stay bare.
"""

from __future__ import annotations

from ..config import DEFAULT_INSTRUCTION

SIMILAR_TEXT = "Retrieve semantically similar text."
TASK_INSTRUCTIONS: dict[str, str] = {
    # STS and summarization
    **dict.fromkeys(
        "STSBenchmark SICK-R BIOSSES STS12 STS13 STS14 STS15 STS16 STS17 STS22 SemRel24STS SemRel24".split()
        + ["CLSS-Paragraph2Sentence", "CLSS-Sentence2Phrase"],
        SIMILAR_TEXT,
    ),
    "SummEval": "Given a news summary, retrieve other semantically similar summaries",
    # retrieval
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question",
    "ArguAna": "Given a claim, find documents that refute the claim",
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim",
    "CQADupstackRetrieval": "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question",
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim",
    "FiQA2018": "Given a financial question, retrieve user replies that best answer the question",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query",
    "NQ": "Given a question, retrieve Wikipedia passages that answer the question",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper",
    "Touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query",
    "MED": "Given a medical information request, retrieve relevant Medline abstracts",
    "CACM": "Given a computer science information request, retrieve relevant titles and abstracts of Communications of the ACM articles",
    "NPL": "Given a query about electronic engineering or physics, retrieve relevant paper abstracts",
    "LISA": "Given a library and information science research request, retrieve relevant abstracts",
    # reranking
    "AskUbuntuDupQuestions": "Retrieve duplicate questions from AskUbuntu forum",
    "MindSmallReranking": "Retrieve relevant news articles based on user browsing history",
    "SciDocsRR": "Given a title of a scientific paper, retrieve the titles of other relevant papers",
    "StackOverflowDupQuestions": "Retrieve duplicate questions from StackOverflow forum",
    "TRECQA": "Given a question, retrieve sentences that answer the question",
    "SemEval2016CQA-QQ": "Retrieve questions from the Qatar Living forum that are similar to the given question",
    "SemEval2016CQA-QA": "Given a question from the Qatar Living forum, retrieve the comments that answer it",
    "SelQA": "Given a question, retrieve Wikipedia sentences that answer the question",
    "MEDIQA-QA": "Given a consumer health question, retrieve passages that answer the question",
    "LiveQA-Med": "Given a consumer health question, retrieve answers from trusted medical sources",
    # classification
    "AmazonCounterfactualClassification": "Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
    "AmazonCounterfactual": "Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
    "AmazonPolarityClassification": "Classify Amazon reviews into positive or negative sentiment",
    "AmazonReviewsClassification": "Classify the given Amazon review into its appropriate rating category",
    "Banking77Classification": "Given a online banking query, find the corresponding intents",
    "Banking77": "Given a online banking query, find the corresponding intents",
    "EmotionClassification": "Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, fear, joy, love, sadness, and surprise",
    "ImdbClassification": "Classify the sentiment expressed in the given movie review text from the IMDB dataset",
    "MassiveIntentClassification": "Given a user utterance as query, find the user intents",
    "MassiveScenarioClassification": "Given a user utterance as query, find the user scenarios",
    "MTOPDomainClassification": "Classify the intent domain of the given utterance in task-oriented conversation",
    "MTOPIntentClassification": "Classify the intent of the given utterance in task-oriented conversation",
    "ToxicConversationsClassification": "Classify the given comments as either toxic or not toxic",
    "TweetSentimentExtractionClassification": "Classify the sentiment of a given tweet as either positive, negative, or neutral",
    "Emotion": "Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, fear, joy, love, sadness, and surprise",
    "TweetSentimentExtraction": "Classify the sentiment of a given tweet as either positive, negative, or neutral",
    "TREC": "Classify the given question by the type of its expected answer",
    "SST2": "Classify the sentiment of a given movie review sentence as positive or negative",
    "SST5": "Classify the sentiment of a given movie review sentence on a five-point scale",
    # clustering
    "TwentyNewsgroupsClustering": "Identify the topic or theme of the given news articles",
    "TwentyNewsgroups": "Identify the topic or theme of the given news articles",
    "Banking77Clustering": "Identify the intent of the given online banking query",
    "ArxivClusteringP2P": "Identify the main and secondary category of Arxiv papers based on the titles and abstracts",
    "ArxivClusteringS2S": "Identify the main and secondary category of Arxiv papers based on the titles",
    "BiorxivClusteringP2P": "Identify the main category of Biorxiv papers based on the titles and abstracts",
    "BiorxivClusteringS2S": "Identify the main category of Biorxiv papers based on the titles",
    "MedrxivClusteringP2P": "Identify the main category of Medrxiv papers based on the titles and abstracts",
    "MedrxivClusteringS2S": "Identify the main category of Medrxiv papers based on the titles",
    "RedditClustering": "Identify the topic or theme of Reddit posts based on the titles",
    "RedditClusteringP2P": "Identify the topic or theme of Reddit posts based on the titles and posts",
    "StackExchangeClustering": "Identify the topic or theme of StackExchange posts based on the titles",
    "StackExchangeClusteringP2P": "Identify the topic or theme of StackExchange posts based on the given paragraphs",
    "StackOverflow": "Identify the topic or theme of StackOverflow posts based on the titles",
    "Biomedical": "Identify the main category of biomedical papers based on the titles",
    "SearchSnippets": "Identify the domain of the given web search snippets",
    "GoogleNewsT": "Identify the news story of the given news headlines",
    "Tweet": "Identify the topic of the given tweets",
    # pair classification
    "SprintDuplicateQuestions": "Retrieve duplicate questions from Sprint forum",
    "TwitterSemEval2015": "Retrieve tweets that are semantically similar to the given tweet",
    "TwitterURLCorpus": "Retrieve tweets that are semantically similar to the given tweet",
    "MSRP": "Retrieve sentences that are paraphrases of the given sentence",
    "QuoraDuplicates": "Retrieve questions that are semantically equivalent to the given question",
    "SciTail": "Retrieve sentences that are entailed by the given science sentence",
    "SICK-E": "Retrieve sentences that are entailed by the given sentence",
    "MedicalQuestionPairs": "Retrieve medical questions that ask the same as the given question",
    "ArgKP2021": "Given an argument, retrieve the key points that it expresses",
    "MEDIQA-RQE": "Given a consumer health question, retrieve the questions whose answers also answer it",
}

FAMILY_INSTRUCTIONS: dict[str, str] = {
    "STS": SIMILAR_TEXT,
    "Summarization": "Given a news summary, retrieve other semantically similar summaries",
    "Retrieval": "Given a query, retrieve relevant documents that answer the query",
    "Reranking": "Given a query, retrieve relevant documents that answer the query",
    "Classification": "Classify the given text into its category",
    "Clustering": "Identify the topic or theme of the given text",
    "PairClassification": "Retrieve text that is semantically similar to the given text",
}
SUFFIXES = ("Classification", "Clustering", "Reranking")  # added to local dataset names (local.py)


def instruction_for(task_name: str, task_type: str | None = None) -> str:
    """The query instruction of a task: by name (also ``name.v2`` / ``local:name`` / a local
    dataset's name without the family suffix its task gets, e.g. ``TweetClustering``), else
    its family."""
    keys = [task_name, task_name.split(".")[0], task_name.split(":")[-1]]
    keys += [k.removesuffix(suffix) for k in keys for suffix in SUFFIXES if k.endswith(suffix)]
    for key in keys:
        if key in TASK_INSTRUCTIONS:
            return TASK_INSTRUCTIONS[key]
    return FAMILY_INSTRUCTIONS.get(task_type or "", DEFAULT_INSTRUCTION)
